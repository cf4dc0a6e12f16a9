#!/usr/bin/env bash
# Fresh machine: install everything needed for the tests into .venv and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
. .venv/bin/activate
python -m pytest -q -p no:cacheprovider "$@"
