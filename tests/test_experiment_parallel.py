"""Frames on parallel threads: same numbers as one thread, bit for bit, both ways."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from edwidgets.experiment.forward import ForwardModel
from edwidgets.experiment.parallel import available_cores, intra_op_threads, map_frames, resolve_workers
from edwidgets.experiment.synthetic import make_synthetic_dataset
from edwidgets.refine.model import RefinementModel, make_thickness_model
from edwidgets.refine.objective import Objective


@pytest.fixture(scope="module")
def dataset(quartz_model):
    return make_synthetic_dataset(quartz_model, angle_range=(-6.0, 6.0), step_deg=2.0, half_width_deg=1.0,
                                  resolution=1.0, n_samples=4, thickness_mean=500.0, seed=3)


def objective_gradients(dataset, start, workers: int):
    exp = dataset.experiment
    forward = ForwardModel(exp, start, g_max=1.0, n_samples=4, selection=None, workers=workers)
    thickness = make_thickness_model("per-frame", exp.frame_angle_deg, np.full(exp.n_frames, 450.0))
    model = RefinementModel(start, exp.frame_angle_deg, anisotropic=True, thickness_model=thickness,
                            refine={"thickness": True, "orientation": True})
    with torch.no_grad():  # off the file orientations, so the orientation gradients are not special
        model.orientation.copy_(1e-3 * torch.linspace(-1.0, 1.0, model.orientation.numel()).reshape(model.orientation.shape))
    evaluation = Objective(forward, model).evaluate()
    evaluation.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return evaluation, grads, forward, model


def test_parallel_frames_match_serial_bitwise(dataset):
    start = dataset.truth.perturbed(0.05, seed=2)
    serial, g1, forward, model = objective_gradients(dataset, start, workers=1)
    parallel, g3, _, _ = objective_gradients(dataset, start, workers=3)
    assert torch.equal(serial.i_calc.detach(), parallel.i_calc.detach())
    assert set(g1) == {"orientation", "asu.positions", "asu.adp", "thickness.log_values"} == set(g3)
    for name in g1:
        assert torch.equal(g1[name], g3[name]), name
        assert float(g1[name].abs().max()) > 0, name

    # independent of the frame Function: every frame through plain autograd, one graph
    model.zero_grad()
    couplings = forward.couplings(model.atoms())
    thickness, rotations = model.frame_thickness(), model.rotations()
    i_calc = torch.zeros(forward.n_reflections, dtype=forward.dtype)
    for plan in forward.plans:
        if len(plan.rows):
            part = forward.frame_intensities(plan, couplings, thickness[plan.frame:plan.frame + 1], rotations[plan.frame])[0]
            i_calc = i_calc.index_put((plan.rows,), part)
    torch.testing.assert_close(i_calc, serial.i_unscaled.detach(), rtol=0, atol=0)
    i_calc.backward(serial.i_unscaled.detach())  # any fixed cotangent
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    again = forward.intensities(model.frame_thickness(), atoms=model.atoms(), rotations=model.rotations())
    again.backward(serial.i_unscaled.detach())
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, reference[name], rtol=1e-12, atol=1e-14)


def test_retained_graph_gives_jacobian_rows_of_one_frame(dataset):
    """Each row's backward skips the frames it does not touch; the graph survives repeated use."""
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.0, n_samples=4, selection=None, workers=2)
    thickness = torch.full((dataset.experiment.n_frames,), 400.0, dtype=torch.float64, requires_grad=True)
    i_calc = forward.intensities(thickness)
    rows = [int(forward.plans[f].rows[0]) for f in (0, 3) if len(forward.plans[f].rows)]
    for row in rows + rows:  # twice: retain_graph keeps the frames' graphs
        (grad,) = torch.autograd.grad(i_calc[row], thickness, retain_graph=True)
        frame = int(forward.frame_index[row])
        assert grad[frame] != 0 and torch.count_nonzero(grad) == 1


def test_no_graph_under_no_grad_in_workers(dataset):
    forward = ForwardModel(dataset.experiment, dataset.truth, g_max=1.0, n_samples=4, selection=None, workers=2)
    thickness = torch.full((dataset.experiment.n_frames,), 400.0, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        out = forward.intensities(thickness)
    assert out.grad_fn is None and not out.requires_grad


def test_map_frames_order_threads_and_nesting():
    names = []

    def work(x):
        names.append(threading.current_thread().name)
        inner = map_frames(lambda y: y * 10, [x, x + 1], workers=2)  # nested: runs serially in the worker
        return x, inner

    out = map_frames(work, range(6), workers=2)
    assert out == [(x, [10 * x, 10 * x + 10]) for x in range(6)]
    assert all(n.startswith("edwidgets-frames") for n in names)
    assert map_frames(lambda x: threading.current_thread().name, [1], workers=4) == [threading.current_thread().name]


def test_worker_counts():
    assert resolve_workers("auto") == available_cores() == resolve_workers(None, "cpu")
    assert resolve_workers("auto", "cuda:0") == 1 and resolve_workers(3) == 3
    for bad in (0, -1, "many"):
        with pytest.raises(ValueError):
            resolve_workers(bad)
    assert intra_op_threads(available_cores()) == 1 and intra_op_threads(1) == available_cores()


def test_auto_method_is_the_eigendecomposition_on_the_cpu(dataset, quartz_model):
    """``method="auto"``: eigen on the CPU (matrix_exp on a GPU, tests/test_cuda.py), eig with absorption."""
    exp = dataset.experiment
    assert ForwardModel(exp, quartz_model, g_max=1.0, n_samples=2, selection=None).method == "eigen"
    assert ForwardModel(exp, quartz_model, g_max=1.0, n_samples=2, selection=None, absorption=0.1).method == "eig"
