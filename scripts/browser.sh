#!/usr/bin/env bash
# Debian's chromium, for the report's browser test (tests/integration/test_report_browser.py, driven
# by playwright with this executable: no browser download from playwright's servers). Idempotent:
# does nothing when chromium is already installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "[browser] chromium is missing and this user cannot install it: apt-get install chromium" >&2
    exit 1
fi
as_root=""
[ "$(id -u)" -ne 0 ] && as_root="sudo"
echo "[browser] installing Debian's chromium (for the report's browser test)" >&2
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || { $as_root apt-get update -q >/dev/null && $as_root env DEBIAN_FRONTEND=noninteractive \
         apt-get install -y -q --no-install-recommends chromium >/dev/null; }
