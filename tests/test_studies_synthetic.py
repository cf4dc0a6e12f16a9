"""Smoke test of studies/synthetic_study.py on a tiny quartz dataset (a few seconds)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "synthetic_study.py"


@pytest.fixture()
def study(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("synthetic_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(module, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(module, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(module, "HERE", tmp_path)
    return module


def test_grid_search_recovers_true_thickness_with_the_true_structure(study):
    torch.set_num_threads(1)
    ds, scale = study.build_dataset("quartz", profile="sine", dynamic_range=1e6, seed=3, quick=True)
    from edwidgets.experiment.forward import ForwardModel

    forward = ForwardModel(ds.experiment, ds.truth, g_max=scale["resolution"], sg_max=scale["sg_max"],
                           n_samples=scale["n_samples"], selection=None)
    t_best, wr = study.grid_search(forward, ds.truth)
    # the grid has 2 Å steps; Poisson noise at I_max = 1e6 moves the optimum by little more
    assert np.max(np.abs(t_best - ds.thickness)) < 4.0
    # a structure 0.2 Å off gives a clearly worse per-frame fit
    start = study.start_structure(ds.truth, "quartz", 0.2, seed=1)
    _, wr_start = study.grid_search(forward, start)
    assert np.nanmean(wr_start) > 5 * np.nanmean(wr)


def test_time_to_threshold_counts_steps_before_the_first_hit(study):
    rec = {"history": {"wR_all": [0.5, 0.1, 0.03, 0.019, 0.01], "seconds": [1.0, 2.0, 3.0, 4.0, 5.0]}}
    out = study.time_to_threshold(rec, 0.02)
    assert out["epochs_to_threshold"] == 3 and out["seconds_to_threshold"] == pytest.approx(6.0)
    assert study.time_to_threshold(rec, 0.001)["epochs_to_threshold"] is None


def test_quick_table1_run_writes_records_table_and_figures(study, tmp_path, capsys):
    assert study.main(["--study", "table1", "--structures", "quartz", "--quick", "--epochs", "3",
                       "--threads", "1", "--report"]) == 0
    files = sorted((tmp_path / "runs" / "table1").glob("*_quick.json"))
    assert [f.name.split("_")[1] for f in files] == ["kinematic", "nn", "single"]
    rec = json.loads(files[1].read_text())
    assert len(rec["history"]["wR_all"]) == 3 == len(rec["history"]["rmsd"])
    assert rec["history"]["rmsd"][0] == pytest.approx(rec["start_rmsd"])
    assert rec["beams_per_frame"]["mean"] > 1 and rec["n_reflections"] > 0
    out = capsys.readouterr().out
    assert "| quartz | 0.2 | ThicknessNN |" in out and "0.012 / 0.0003 / 0.0001" in out
    assert (tmp_path / "figures" / "table1_quick_curves.png").stat().st_size > 1000
    assert not (tmp_path / "RESULTS.md").exists()  # quick runs are never recorded
