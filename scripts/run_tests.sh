#!/usr/bin/env bash
# The checks, environment set-up included: lint (ruff), the package layering (import-linter), the test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
venv="${MIXCL_VENV:-.venv}"
"$venv/bin/ruff" check .
"$venv/bin/lint-imports"
exec "$venv/bin/python" -m pytest "$@"
