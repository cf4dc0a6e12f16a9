"""End-to-end command line: ``python -m edwidgets demo --quick`` and refine's error handling."""
from __future__ import annotations

import json
import subprocess
import sys

import gemmi
import pandas as pd

from edwidgets.cli import build_parser


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "edwidgets", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("refined.cif", "summary.json", "frames.csv", "r_curves.png", "thickness.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    for key in ("R_obs", "wR_all", "N_obs", "N_all", "thickness_per_frame_A", "epochs", "timings", "settings"):
        assert key in summary
    assert 0 < summary["wR_all"] < 1 and 0 < summary["R_obs"] < 1
    frames = pd.read_csv(out / "frames.csv")
    assert list(frames.columns) == ["frame", "angle_deg", "thickness_A", "scale", "R", "n_reflections"]
    assert len(summary["thickness_per_frame_A"]) == len(frames)
    # the authors' convention: frames' own-scale R_obs averaged, never above the same frames at the wR scale
    scored = frames["R"][frames["R"] > 0]
    assert 0 < summary["R_obs_frame_mean"] <= scored.mean() + 1e-12
    assert 0 < summary["wR_all_frame_mean"] < 1
    structure = gemmi.read_small_structure(str(out / "refined.cif"))
    assert len(structure.sites) == 2 and structure.spacegroup_hm.replace(" ", "") == "P3221"
    assert "(" in (out / "refined.cif").read_text()  # s.u. written
    first = float(proc.stdout.split("wR_all ")[1].split(" ->")[0])
    assert summary["wR_all"] < 0.5 * first


def test_refine_reports_missing_files_clearly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edwidgets", "refine", "--structure", "quartz_P3221",
                           "--data", str(tmp_path / "nope.cif_pets"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "nope.cif_pets: no such data file" in proc.stderr and "Traceback" not in proc.stderr


def test_refine_options_parse():
    args = build_parser().parse_args(["refine", "--structure", "s.cif", "--data", "d.cif_pets", "--out", "o",
                                      "--epochs", "5", "--kinematic", "--no-prepare", "--threads", "1"])
    assert args.epochs == 5 and args.kinematic and args.no_prepare and args.threads == 1 and args.lr == 1e-3


def test_refine_defaults_follow_the_paper_quartz_settings():
    """A first run needs no options: g_max 1.6 Å⁻¹, Klar et al.'s selection (0.9, 0.0015), bounded
    orientation corrections, samples from the rocking-curve rule."""
    from edwidgets.refine.command import DEFAULT_MAX_ANGLE_DEG

    args = build_parser().parse_args(["refine", "--structure", "s.cif", "--data", "d.cif_pets", "--out", "o"])
    assert args.g_max == 1.6 and tuple(args.selection) == (0.9, 0.0015) and args.samples is None
    assert args.max_orientation_deg == DEFAULT_MAX_ANGLE_DEG == 0.5
    assert args.thickness_model == "per-frame" and args.lr == 1e-3 and args.epochs == 200


def test_auto_samples_and_group_rates():
    import pytest

    from edwidgets.errors import EdwidgetsError
    from edwidgets.refine.command import MAX_AUTO_SAMPLES, auto_samples, parse_group_rates

    class FakeExperiment:
        def auto_samples(self, thickness, g_max):
            return int(2 * thickness * g_max / 10)

    assert auto_samples(FakeExperiment(), 100.0, 1.0) == 20
    assert auto_samples(FakeExperiment(), 1e4, 2.0) == MAX_AUTO_SAMPLES
    assert parse_group_rates(["thickness=1e-2", "adp=5e-4"]) == {"thickness": 0.01, "adp": 0.0005}
    for bad in (["thickness"], ["scale=1e-3"], ["adp=fast"], ["adp=-1"]):
        with pytest.raises(EdwidgetsError):
            parse_group_rates(bad)


def test_joint_orientation_stays_in_the_box_with_the_preparation():
    """bound_orientations clamps the joint angles after each step so that preparation + joint
    stays within ±b per angle; the preparation's angles are read back in the model's convention."""
    import numpy as np
    import torch

    from edwidgets.experiment.forward import small_rotation
    from edwidgets.refine.command import bound_orientations

    class Job:
        pass

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.orientation = torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))

        n_frames = 2

    model, job = Model(), Job()
    job.optimizer = torch.optim.SGD([model.orientation], lr=1.0)
    prep_deg = np.array([[0.3, -0.2, 0.1], [0.0, 0.0, 0.0]])
    prep = small_rotation(torch.tensor(np.radians(prep_deg))).numpy()
    bound_orientations(job, model, prep, 0.5)
    model.orientation.grad = torch.full((2, 3), -1.0, dtype=torch.float64)  # SGD step of +1 rad on every angle
    job.optimizer.step()
    got = np.degrees(model.orientation.detach().numpy())
    assert np.allclose(got, 0.5 - prep_deg, atol=1e-9)
    model.orientation.grad = torch.full((2, 3), 5.0, dtype=torch.float64)  # −5 rad
    job.optimizer.step()
    assert np.allclose(np.degrees(model.orientation.detach().numpy()), -0.5 - prep_deg, atol=1e-9)


def test_refine_with_absorption_end_to_end(quartz_model, tmp_path):
    """--absorption runs the general eigen path from the CLI to summary.json; a bad κ is refused
    with a clear message."""
    from edwidgets.experiment.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(quartz_model, angle_range=(-4.0, 4.0), step_deg=4.0, half_width_deg=1.0,
                                     resolution=1.0, n_samples=3, thickness_mean=400.0, profile="constant", seed=2)
    data = dataset.write(tmp_path / "small.cif_pets")
    out = tmp_path / "out"
    base = [sys.executable, "-m", "edwidgets", "refine", "--structure", "quartz_P3221", "--data", str(data),
            "--out", str(out), "--g-max", "1.0", "--samples", "3", "--epochs", "3", "--no-prepare", "--no-su",
            "--thickness", "400", "--no-refine-orientation", "--selection", "1.0", "0.0"]
    proc = subprocess.run(base + ["--absorption", "0.1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["absorption"] == 0.1 and 0 < summary["wR_all"] < 1
    bad = subprocess.run(base + ["--absorption", "-1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--absorption must be a number ≥ 0" in bad.stderr and "Traceback" not in bad.stderr


def test_refine_with_pooled_thickness_search_end_to_end(quartz_model, tmp_path):
    """--thickness-window-deg reaches the preparation: a window over all frames gives every frame
    the same start thickness; a negative window is refused with a clear message."""
    from edwidgets.experiment.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(quartz_model, angle_range=(-4.0, 4.0), step_deg=2.0, half_width_deg=1.0,
                                     resolution=1.0, n_samples=3, thickness_mean=400.0, seed=4)
    data = dataset.write(tmp_path / "small.cif_pets")
    out = tmp_path / "out"
    base = [sys.executable, "-m", "edwidgets", "refine", "--structure", "quartz_P3221", "--data", str(data),
            "--out", str(out), "--g-max", "1.0", "--samples", "3", "--epochs", "2", "--no-orientation", "--no-su",
            "--no-refine-orientation", "--selection", "1.0", "0.0"]
    proc = subprocess.run(base + ["--thickness-window-deg", "90"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["thickness_window_deg"] == 90.0
    start = settings["preparation"]["thickness_per_frame_A"]
    assert len(start) == 5 and len(set(start)) == 1
    assert start[0] == settings["preparation"]["global_thickness_A"]
    bad = subprocess.run(base + ["--thickness-window-deg", "-2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--thickness-window-deg must be a number ≥ 0" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_refine_refuses_an_unusable_device_clearly(tmp_path):
    import torch

    base = [sys.executable, "-m", "edwidgets", "refine", "--structure", "quartz_P3221", "--data",
            str(tmp_path / "d.cif_pets"), "--out", str(tmp_path / "o")]
    cases = [("gpu0", "not a torch device"), ("meta", "only cpu and cuda are supported")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "this torch sees no CUDA GPU"))
    for device, message in cases:
        (tmp_path / "d.cif_pets").write_text("")  # never read: the device is checked first
        proc = subprocess.run(base + ["--device", device], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, (device, proc.stderr[-1500:])
        assert "Traceback" not in proc.stderr
