#!/usr/bin/env bash
# What the UI tests (tests/test_ui_*.py) and the real-browser test (tests/browser/) need on a fresh
# machine:
#   - the python extras `test` and `jupyter` in .venv (JupyterLab, widgets, Playwright, kaleido);
#   - Debian's Chromium (apt; as root, or through passwordless sudo), used by Playwright and kaleido;
#   - the npm package `3dmol` in the gitignored node_modules/: its build/3Dmol-min.js is handed to
#     the 3D view so it works offline (nothing is vendored in the repository).
# The tests find node_modules/3dmol by themselves; for notebooks, eval the line this prints:
#   eval "$(bash scripts/browser-setup.sh | tail -1)"
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh test,jupyter >&2

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    else
        echo "browser-setup: cannot install chromium (not root, no sudo); browser tests will be skipped" >&2
    fi
fi

js=node_modules/3dmol/build/3Dmol-min.js
if [ ! -f "$js" ]; then
    if command -v npm >/dev/null 2>&1; then
        # --no-save/--no-package-lock: no package.json or lock file appears in the repository
        npm install --prefix . --no-save --no-package-lock --no-audit --no-fund "3dmol@^2.5" >&2
    else
        echo "browser-setup: npm not found; the 3D view will load 3Dmol.js from its CDN and browser tests will be skipped" >&2
    fi
fi
if [ -f "$js" ]; then
    echo "export EDWIDGETS_3DMOL_JS=$PWD/$js"
fi
