#!/usr/bin/env bash
# Create the project's virtual environment (.venv, or $MIXCL_VENV) with the pinned requirements.
# Does nothing when it is already up to date; reinstalls when requirements.txt changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIXCL_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)"

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
echo "$wanted" > "$stamp"
