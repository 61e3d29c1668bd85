#!/usr/bin/env bash
# Makes (or reuses) a Python virtual environment under target/py/NAME with the
# pinned packages of scripts/requirements/NAME.txt from PyPI, and prints its
# path. Rebuilt when the requirements file changes. Python 3.11 or newer.
#   venv=$(scripts/py-venv.sh deploy)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: py-venv.sh NAME}
req=scripts/requirements/$name.txt
venv=target/py/$name
[ -f "$req" ] || { echo "no $req" >&2; exit 2; }

py=""
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py=$candidate
    break
  fi
done
if [ -z "$py" ]; then
  echo "installing python3 and python3-venv" >&2
  apt-get update -qq >&2 && apt-get install -y -qq python3 python3-venv >&2
  py=python3
fi

want="$(sha256sum "$req" | cut -d' ' -f1) $("$py" -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "python venv $venv: installing $req" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
  echo "$want" > "$venv/.requirements"
fi
echo "$venv"
