#!/usr/bin/env bash
# Fresh machine: install everything needed for the tests into .venv and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# UI extras, Chromium and a local 3Dmol.js for tests/test_ui_* and tests/browser (they skip with a
# reason when something is missing, so a failed setup does not fail the run)
bash scripts/browser-setup.sh >/dev/null || echo "browser setup failed: UI/browser tests may be skipped" >&2
. .venv/bin/activate
# --nbval-lax: every notebook in notebooks/ (pyproject testpaths) runs top to bottom and must not
# raise; outputs are not compared. --nbval-current-env: in this venv's kernel, not a system one.
python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env "$@"
