#!/usr/bin/env bash
# Make sure Graphviz's `dot` is on PATH: install it with apt when we are root,
# otherwise say exactly what to run.
set -euo pipefail
if command -v dot >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo ">> installing Graphviz (dot) with apt-get" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  command -v dot >/dev/null 2>&1 && exit 0
fi
echo "error: Graphviz's 'dot' is not installed. Install it: 'sudo apt-get install graphviz'" \
     "(Debian/Ubuntu), 'brew install graphviz' (macOS) or 'conda install -c conda-forge graphviz'." >&2
exit 1
