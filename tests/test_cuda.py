"""The CUDA path: the same forward model, gradients and refinement on the GPU as on the CPU.

Skipped where torch sees no GPU (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edwidgets.experiment.forward import ForwardModel
from edwidgets.refine.demo import demo_crystal, synthetic_rotation_experiment
from edwidgets.refine.job import RefinementJob
from edwidgets.refine.model import RefinementModel, make_thickness_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

G_MAX = 1.0


@pytest.fixture(scope="module")
def problem():
    truth = demo_crystal()
    exp, _ = synthetic_rotation_experiment(truth, 5, thickness=400.0, g_max=G_MAX, sg_centre=0.012)
    start = truth.perturbed(0.05, seed=3, isotropic=True)
    return exp, start


def forward_on(device, problem, **kw):
    exp, start = problem
    return ForwardModel(exp, start, g_max=G_MAX, sg_max=0.012, n_samples=3, selection=None, device=device, **kw)


def job_on(device, problem, **kw):
    exp, start = problem
    forward = forward_on(device, problem)
    thickness = make_thickness_model("nn", exp.frame_angle_deg, 400.0, seed=0)
    model = RefinementModel(start, exp.frame_angle_deg, thickness_model=thickness, anisotropic=True,
                            refine={"orientation": True}).to(device)
    return RefinementJob(forward, model, threads=1, **kw)


def test_auto_method_is_the_matrix_exponential_on_the_gpu(problem):
    # batched eigh is slow on CUDA (benchmarks/RESULTS.md); the CPU keeps eigen
    assert forward_on("cuda", problem).method == "matrix_exp"
    assert forward_on("cpu", problem).method == "eigen"


@pytest.mark.parametrize("method", ["eigen", "matrix_exp"])
def test_intensities_and_gradients_match_the_cpu(problem, method):
    out = {}
    for device in ("cpu", "cuda"):
        fw = forward_on(device, problem, method=method)
        thickness = torch.full((problem[0].n_frames,), 400.0, dtype=torch.float64, device=device, requires_grad=True)
        intensity = fw.intensities(thickness)
        assert intensity.device.type == device
        intensity.square().sum().backward()
        out[device] = (intensity.detach().cpu(), thickness.grad.cpu())
    assert torch.allclose(out["cuda"][0], out["cpu"][0], rtol=1e-9, atol=1e-14)
    assert torch.allclose(out["cuda"][1], out["cpu"][1], rtol=1e-7, atol=1e-12)


def test_refinement_on_the_gpu_follows_the_cpu_trajectory(problem, tmp_path):
    results = {d: job_on(d, problem, n_epochs=8, lr=3e-3, lrs={"orientation": 1e-5}, uncertainties=True).run() for d in ("cpu", "cuda")}
    cpu, gpu = results["cpu"], results["cuda"]
    assert gpu.state == "finished" and gpu.wr_all < gpu.history["wR_all"][0]
    assert np.allclose(gpu.history["wR_all"], cpu.history["wR_all"], rtol=1e-6, atol=1e-10)
    assert np.allclose(gpu.thickness, cpu.thickness, rtol=1e-6)
    assert gpu.uncertainties is not None
    paths = gpu.write(tmp_path)  # results leave the GPU as plain files
    assert paths["cif"].exists() and paths["summary"].exists()


def test_refine_command_on_the_gpu_end_to_end(tmp_path):
    """``edwidgets refine --device cuda``: preparation on the CPU, refinement on the GPU, the same
    R values as on the CPU."""
    import json
    import subprocess
    import sys

    from edwidgets.crystal import load_structure
    from edwidgets.experiment.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(load_structure("quartz_P3221"), angle_range=(-4.0, 4.0), step_deg=2.0,
                                     half_width_deg=1.0, resolution=1.0, n_samples=3, thickness_mean=400.0, seed=4)
    data = dataset.write(tmp_path / "small.cif_pets")
    summaries = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        proc = subprocess.run([sys.executable, "-m", "edwidgets", "refine", "--structure", "quartz_P3221",
                               "--data", str(data), "--out", str(out), "--g-max", "1.0", "--samples", "3",
                               "--epochs", "4", "--orientation-evaluations", "20", "--selection", "1.0", "0.0",
                               "--device", device], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        summaries[device] = json.loads((out / "summary.json").read_text())
    gpu, cpu = summaries["cuda"], summaries["cpu"]
    assert gpu["settings"]["device"].startswith("cuda") and gpu["settings"]["method"] == "matrix_exp"
    assert cpu["settings"]["method"] == "eigen"
    assert gpu["wR_all"] == pytest.approx(cpu["wR_all"], rel=1e-6)
    assert gpu["R_obs"] == pytest.approx(cpu["R_obs"], rel=1e-6)


def test_thickness_search_on_the_gpu_matches_the_cpu(problem):
    from edwidgets.experiment.preparation import thickness_search

    grid = np.arange(100.0, 800.0, 5.0)
    searches = {d: thickness_search(forward_on(d, problem), grid) for d in ("cpu", "cuda")}
    assert np.array_equal(searches["cuda"].per_frame, searches["cpu"].per_frame)
    assert np.allclose(searches["cuda"].curve, searches["cpu"].curve, rtol=1e-9)
