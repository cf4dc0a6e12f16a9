"""Absorption (U' = κU) in the frame model: general eigen path vs matrix_exp, and the preparation's
many-thickness shortcut against the differentiable path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edwidgets.experiment.forward import ForwardModel
from edwidgets.experiment.preparation import thickness_search
from edwidgets.experiment.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(quartz_model):
    return make_synthetic_dataset(quartz_model, angle_range=(-4.0, 4.0), step_deg=2.0, half_width_deg=1.0,
                                  resolution=1.0, n_samples=3, thickness_mean=600.0, seed=5)


def test_absorbing_frames_match_matrix_exp_with_gradients(dataset):
    truth = dataset.truth
    thickness = torch.full((dataset.experiment.n_frames,), 600.0, dtype=torch.float64)
    out, grads = {}, {}
    for method in ("eigen", "matrix_exp"):
        forward = ForwardModel(dataset.experiment, truth, g_max=1.0, n_samples=3, selection=None,
                               absorption=0.1, method=method, workers=2)
        t = thickness.clone().requires_grad_()
        out[method] = forward.intensities(t)
        (grads[method],) = torch.autograd.grad((out[method] * torch.linspace(1, 2, len(out[method]), dtype=torch.float64)).sum(), [t])
    assert forward.method == "matrix_exp"
    torch.testing.assert_close(out["eigen"], out["matrix_exp"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads["eigen"], grads["matrix_exp"], rtol=1e-8, atol=1e-12)
    plain = ForwardModel(dataset.experiment, truth, g_max=1.0, n_samples=3, selection=None).intensities(thickness)
    assert float(out["eigen"].sum()) < float(plain.sum())  # absorption removes intensity


def test_preparation_shortcut_with_absorption(dataset):
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.0, n_samples=3, selection=None, absorption=0.08)
    assert forward.method == "eig"
    grid = np.array([300.0, 450.0, 600.0])
    couplings = forward.couplings()
    plan = next(p for p in forward.plans if len(p.rows))
    shortcut = forward.intensities_from_eigen(plan, forward.frame_eigen(plan, couplings), torch.as_tensor(grid))
    direct = forward.frame_intensities(plan, couplings, torch.as_tensor(grid))
    torch.testing.assert_close(shortcut, direct, rtol=1e-10, atol=1e-13)
    search = thickness_search(forward, grid)
    assert np.isfinite(search.per_frame_wr).all() and search.global_thickness in grid
