#!/usr/bin/env bash
# Create the project's virtual environment (.venv, or $MIXCL_VENV): the pinned requirements, then this project
# itself in editable mode (its packages import from any folder). Does nothing when it is up to date; installs
# again when requirements.txt or pyproject.toml change.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIXCL_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
wanted="$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: $python is $("$python" --version 2>&1); this project needs Python 3.10 or newer (set PYTHON=...)" >&2
  exit 1
fi
echo "Setting up $venv with requirements.txt (the first time this installs PyTorch: a few minutes)..."
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$root/requirements.txt"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
echo "$wanted" > "$stamp"
