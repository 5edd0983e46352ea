#!/usr/bin/env bash
# venv.sh: the external tests' Python environment in .build/venv (requirements.txt from PyPI).
# Installs only when the venv is missing or requirements.txt changed (a stamp holds its hash),
# so a second run installs nothing. Prints the venv's python path on stdout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.build/venv"
req="$root/Tests/External/requirements.txt"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
    echo "venv: installing $(grep -v '^#' "$req" | tr '\n' ' ')into $venv" >&2
    mkdir -p "$root/.build"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$venv/.requirements.sha256"
fi
echo "$venv/bin/python"
