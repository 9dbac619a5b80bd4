#!/usr/bin/env bash
# Make sure a Chromium is installed for the real-browser test (tests/test_browser.py drives it
# with Playwright, which must never download a browser): install Debian's `chromium` with apt
# when we are root, otherwise say exactly what to run.
set -euo pipefail
CHROMIUM="${HELIX_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo ">> installing Chromium with apt-get (for the browser test)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  [ -x "$CHROMIUM" ] && exit 0
fi
echo "error: Chromium is not installed at $CHROMIUM (the browser test needs it). Install it:" \
     "'sudo apt-get install chromium' (Debian/Ubuntu), or point HELIX_CHROMIUM at a Chromium binary." >&2
exit 1
