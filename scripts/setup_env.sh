#!/usr/bin/env bash
# Create the project's virtual environment (.venv, or $MIXCL_VENV): the pinned requirements, then this project
# itself in editable mode (its packages import from any folder). Does nothing when it is up to date; installs
# again when requirements.txt or pyproject.toml change.
#   bash scripts/setup_env.sh               the project
#   bash scripts/setup_env.sh app           and the web app's extras (requirements-app.txt)
#   bash scripts/setup_env.sh app browser   and its browser test's (requirements-browser.txt)
# An extra is installed once, and again when its file changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MIXCL_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
pip=(--quiet --disable-pip-version-check)
for extra in "$@"; do
  if [ ! -f "$root/requirements-$extra.txt" ]; then
    echo "error: no extra named $extra (expected requirements-$extra.txt; extras: app, browser)" >&2
    exit 1
  fi
done

stamp="$venv/.requirements.sha256"
wanted="$(cat "$root/requirements.txt" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: $python is $("$python" --version 2>&1); this project needs Python 3.10 or newer (set PYTHON=...)" >&2
    exit 1
  fi
  echo "Setting up $venv with requirements.txt (the first time this installs PyTorch: a few minutes)..."
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install "${pip[@]}" -r "$root/requirements.txt"
  "$venv/bin/python" -m pip install "${pip[@]}" --no-deps --no-build-isolation -e "$root"
  echo "$wanted" > "$stamp"
fi

for extra in "$@"; do
  file="$root/requirements-$extra.txt"
  stamp="$venv/.requirements-$extra.sha256"
  wanted="$(sha256sum < "$file" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    echo "Installing requirements-$extra.txt into $venv..."
    # --no-deps: each extra pins all it needs beyond requirements.txt (why: the file's header)
    "$venv/bin/python" -m pip install "${pip[@]}" --no-deps -r "$file"
    echo "$wanted" > "$stamp"
  fi
done
