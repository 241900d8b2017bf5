#!/usr/bin/env bash
# Builds the Unity layer against the stubs and runs tests/unity/ScreenBench.cs: main-thread ms per chunk (a benchmark
# that prints numbers; no thresholds). Needs mcs and mono. Arguments go to the bench: [WIDTH HEIGHT FRAMES CHUNKS].
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PKG="$ROOT/unity_plugin/com.shotstream.bridge"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
MCS=(mcs -langversion:7.2 -warnaserror+ -optimize+)
"${MCS[@]}" -target:library -out:"$OUT/UnityEngine.dll" "$ROOT/tests/unity/stubs/UnityEngineStub.cs"
"${MCS[@]}" -unsafe -target:library -out:"$OUT/ShotStream.Core.dll" "$PKG"/Runtime/Core/*.cs
"${MCS[@]}" -target:library -r:"$OUT/UnityEngine.dll" -r:"$OUT/ShotStream.Core.dll" -out:"$OUT/ShotStream.Runtime.dll" "$PKG"/Runtime/Unity/*.cs
"${MCS[@]}" -r:"$OUT/UnityEngine.dll" -r:"$OUT/ShotStream.Core.dll" -r:"$OUT/ShotStream.Runtime.dll" -out:"$OUT/ScreenBench.exe" "$ROOT/tests/unity/ScreenBench.cs"
echo "machine: $(uname -m), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $(mono --version | head -1)"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet -- "$PKG" || echo '+changes')"
cd "$OUT" && mono ScreenBench.exe "$@"
