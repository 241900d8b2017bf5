#!/usr/bin/env bash
# Generates the Python gRPC/protobuf code from proto/ into ./shotstream/ (git-ignored; never edit it).
# Run by scripts/setup.sh; re-run after changing a .proto file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf shotstream
"$PY" -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/shotstream/v1/*.proto
