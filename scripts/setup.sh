#!/usr/bin/env bash
# Set up zgbench on a fresh Debian/Ubuntu machine: system libraries, a virtual environment in
# .venv with the CPU build of PyTorch, zgbench with every extra, and the example plugin.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: libLLVM >= 16 for Mitsuba's CPU backend (Debian 12's LLVM 15 crashes
# Dr.Jit), Chromium for the HTML report's browser test, and bubblewrap for the sandbox of
# `zgbench run --isolate` (without it, or without user namespaces, --isolate falls back to
# process separation and says so).
packages=(libllvm19 chromium bubblewrap)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# PyTorch first, pinned: a plain `torch` requirement could pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[all,test]" ./plugins/zgbench-example
echo "zgbench is set up in .venv: .venv/bin/zgbench --help"
