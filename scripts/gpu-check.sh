#!/usr/bin/env bash
# Check every CUDA path of zgbench and time the paper-size instances; writes OUT/gpu-check.json,
# OUT/gpu-check.md and OUT/machine.json (see scripts/gpu_check.py and README, "On a GPU").
#   scripts/gpu-check.sh --device cuda --out gpu-check      # on a GPU machine, < 8 min (H200)
#   scripts/gpu-check.sh --device cpu --small               # the CPU test of this script
# Python: $PYTHON if set, else the checkout's .venv, else python3 (a GPU image's own, whose
# torch has CUDA); the checkout goes first on PYTHONPATH, after what is already there
# (e.g. /tmp/site with the wheels of scripts/fetch-wheels.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" "$root/scripts/gpu_check.py" "$@"
