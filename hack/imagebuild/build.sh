#!/usr/bin/env bash
# Shell entry of hack/imagebuild (stdlib only, so any python3 >= 3.11 runs it; the checkout's venv
# is preferred): build.sh tools|base|build|export|names [--only runtime|operator]
set -euo pipefail
hack=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=$hack/../.venv/bin/python
[[ -x $python ]] || python=python3
PYTHONPATH="$hack${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m imagebuild "$@"
