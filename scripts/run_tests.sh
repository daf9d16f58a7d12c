#!/usr/bin/env bash
# The test suite, environment set-up included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup_env.sh
exec "${MIXCL_VENV:-.venv}/bin/python" -m pytest "$@"
