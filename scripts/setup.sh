#!/usr/bin/env bash
# Creates ./.venv with the pinned, CPU-safe dependency set and installs this project into it
# (editable). Safe to re-run. On a fresh Debian machine it first installs python3-venv via apt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-pip
    else
        echo "setup: python3 has no venv module; run: sudo apt-get install python3-venv" >&2
        exit 1
    fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, from TORCH_INDEX_URL when given (e.g. https://download.pytorch.org/whl/cpu for the
# small CPU wheel on machines whose PyPI serves the CUDA build), then everything else at its pin.
torch_pin=$(grep -E '^torch==' requirements/lock.txt)
.venv/bin/python -m pip install -q --disable-pip-version-check ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$torch_pin"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/lock.txt
bash scripts/gen_proto.sh
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
