"""Every notebook in notebooks/ is stored clean: no outputs, no execution counts, no widget state.

(Running them is nbval's job: ``pytest --nbval-lax`` collects notebooks/ through pyproject's
testpaths; see scripts/test.sh.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    for expected in ("01-quickstart.ipynb", "02-teaching-dynamical-diffraction.ipynb",
                     "03-synthetic-refinement-dashboard.ipynb", "04-real-data-refinement.ipynb",
                     "05-absolute-structure.ipynb"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs_or_widget_state(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("nbformat") == 4
    assert "widgets" not in nb.get("metadata", {}), f"{path.name}: widget state in the notebook metadata"
    for i, cell in enumerate(nb["cells"]):
        assert "widgets" not in cell.get("metadata", {}), f"{path.name} cell {i}: widget state"
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i}: stored outputs (strip them)"
            assert cell.get("execution_count") is None, f"{path.name} cell {i}: execution count"
        assert "attachments" not in cell or not cell["attachments"], f"{path.name} cell {i}: attachments"
