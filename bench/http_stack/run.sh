#!/bin/sh
# Reproduce docs/http-stack.md: installs wrk (Debian) and the benchmark's packages
# into .venv if missing, then runs the whole matrix (about 12 minutes for 3 rounds).
#   bench/http_stack/run.sh                      # the table of the doc
#   bench/http_stack/run.sh --apps raw,starlette --rounds 1 -d 5
set -eu
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null 2>&1 || { apt-get update && apt-get install -y wrk; }
command -v taskset >/dev/null 2>&1 || apt-get install -y util-linux
.venv/bin/pip install -q -r bench/http_stack/requirements.txt
exec .venv/bin/python bench/http_stack/run.py --rounds 3 "$@"
