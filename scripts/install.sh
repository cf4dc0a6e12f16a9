#!/usr/bin/env bash
# Create .venv (if missing) and install edwidgets into it with the CPU build of PyTorch.
# Usage: bash scripts/install.sh [extras]   e.g. bash scripts/install.sh test,jupyter
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# Pin torch first so the dependency range never pulls a CUDA build. Where a CPU wheel
# index is configured (pip.conf / PIP_EXTRA_INDEX_URL) pip takes it from there.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
if [ -n "$extras" ]; then
    python -m pip install -q -e ".[${extras}]"
else
    python -m pip install -q -e .
fi
