#!/usr/bin/env bash
# Sets up ./.venv if needed (scripts/setup.sh) and runs the whole test suite. Extra arguments go to pytest.
# pytest's own exit codes pass through: 5 ("no tests collected") fails like any other error.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
