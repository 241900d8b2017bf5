#!/usr/bin/env bash
# Downloads, into ./.whl/ (git-ignored), the wheels bench/device_check.sh installs on the bare GPU
# machine: Python 3.12, manylinux x86_64, at the pins of requirements/lock.txt. Only what that
# machine lacks (it has torch, triton, transformers, tokenizers, safetensors, sentencepiece, numpy,
# huggingface_hub, pyyaml): the engine's diffusers/ftfy, the service's gRPC/protobuf/websockets/
# prometheus-client, pytest, and Pillow (diffusers imports PIL; installed there only if missing).
# Left out on purpose: imageio-ffmpeg (~30 MB, takes only), grpcio-tools (the generated ./shotstream/
# is carried instead), hypothesis (no CUDA test uses it). Fails if the folder exceeds 60 MiB, leaving
# room for the rest of the 64 MiB the device tool carries.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=.whl
LIMIT_MIB=60

pin() { grep -E "^$1==" requirements/lock.txt || { echo "fetch_wheels: $1 is not pinned in requirements/lock.txt" >&2; exit 1; }; }
# Not in the lock (dependencies of pinned packages): the versions this project's venv resolved.
venv_pin() { echo "$1==$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1")"; }

specs=(
    "$(pin diffusers)" "$(pin ftfy)" "$(venv_pin wcwidth)" "$(venv_pin pillow)"
    "$(pin grpcio)" "$(pin protobuf)" "$(pin grpcio-health-checking)" "$(pin grpcio-reflection)"
    "$(pin websockets)" "$(pin prometheus-client)" "$(pin nvidia-ml-py)"
    "$(pin pytest)" "$(venv_pin pluggy)" "$(venv_pin iniconfig)" "$(venv_pin pygments)"
)

rm -rf "$DEST"
mkdir -p "$DEST"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d "$DEST" "${specs[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
ls -l "$DEST"/*.whl | awk '{printf "%8.2f MiB  %s\n", $5 / 1048576, $NF}'
echo "fetch_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $(awk -v b="$total" 'BEGIN { printf "%.2f", b / 1048576 }') MiB in $DEST"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "fetch_wheels: over ${LIMIT_MIB} MiB: the device tool carries at most 64 MiB in all" >&2
    exit 1
fi
