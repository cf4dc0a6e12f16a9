"""Standard uncertainties from the autograd normal matrix vs scipy.optimize.least_squares' covariance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from edwidgets.experiment.forward import ForwardModel
from edwidgets.refine.demo import demo_crystal, synthetic_rotation_experiment
from edwidgets.refine.model import RefinementModel, make_thickness_model
from edwidgets.refine.objective import Objective
from edwidgets.refine.results import format_with_su
from edwidgets.refine.uncertainties import standard_uncertainties


def build_problem(dtype=torch.float64):
    truth = demo_crystal()
    exp, _ = synthetic_rotation_experiment(truth, 5, thickness=350.0, g_max=1.2, sg_centre=0.015,
                                           i_max=2e3, noise=True, seed=11)
    iso = truth.perturbed(0.0, seed=0, u_scale=1.0, isotropic=True)
    forward = ForwardModel(exp, iso, g_max=1.2, sg_max=0.015, n_samples=3, selection=None, dtype=dtype)
    model = RefinementModel(iso, exp.frame_angle_deg, anisotropic=False,
                            thickness_model=make_thickness_model("constant", exp.frame_angle_deg, 350.0, dtype=dtype),
                            refine={"thickness": False}, dtype=dtype)
    return Objective(forward, model)


@pytest.fixture(scope="module")
def problem():
    return build_problem()


def test_float32_central_difference_su_close_to_float64(problem):
    """The float32 refinement option gets usable s.u. (its own step size), not rounding noise."""
    ref = standard_uncertainties(problem, jacobian="autograd")
    single = standard_uncertainties(build_problem(torch.float32), jacobian="central")
    np.testing.assert_allclose(single.su, ref.su, rtol=0.05)


def test_su_match_scipy_least_squares_covariance(problem):
    objective = problem
    asu = objective.model.asu
    n_pos = asu.positions.numel()
    obs = objective.obs

    def set_params(x):
        with torch.no_grad():
            asu.positions.copy_(torch.as_tensor(x[:n_pos]))
            asu.adp.copy_(torch.as_tensor(x[n_pos:]))

    def residuals(x):
        set_params(x)
        with torch.no_grad():
            ev = objective.evaluate()
            return (obs.weight * (obs.i_obs - ev.i_calc)).numpy()

    x0 = torch.cat([asu.positions.detach(), asu.adp.detach()]).numpy().copy()
    fit = least_squares(residuals, x0, jac="3-point", xtol=1e-12, ftol=1e-12, gtol=1e-12)
    n, p = fit.jac.shape
    cov = np.linalg.inv(fit.jac.T @ fit.jac) * (2 * fit.cost) / (n - p)
    su_scipy = np.sqrt(np.diag(cov))
    set_params(fit.x)
    su = standard_uncertainties(objective, jacobian="autograd")
    assert su.n_params == p and su.n_obs == n
    assert not su.singular_directions
    np.testing.assert_allclose(su.su, su_scipy, rtol=0.05)
    # propagated site s.u.: symmetry-fixed coordinates have exactly zero s.u.
    assert su.site_frac_su.shape == (2, 3) and su.site_frac_su[0, 1] == 0.0
    assert np.all(su.site_frac_su[1] > 0)
    assert np.all(su.site_u_iso_su > 0)
    # isotropic U = v²: σ(U) = 2 v σ(v)
    v = asu.adp.detach().numpy()
    np.testing.assert_allclose(su.site_u_iso_su, 2 * np.abs(v) * su.su[n_pos:], rtol=1e-8)


def test_central_difference_jacobian_matches_autograd_rows(problem):
    """The cheap Jacobian used on large data equals the exact reverse-mode one (float64)."""
    from edwidgets.refine.uncertainties import _jacobian_central, _jacobian_rows

    objective = problem
    inputs = [objective.model.asu.positions, objective.model.asu.adp]
    exact = _jacobian_rows(objective.evaluate().i_calc, inputs)
    central = _jacobian_central(lambda: objective.evaluate().i_calc, inputs)
    scale = exact.abs().max()
    assert scale > 0
    np.testing.assert_allclose(central.numpy(), exact.numpy(), atol=1e-6 * float(scale), rtol=1e-5)
    auto = standard_uncertainties(objective, jacobian="central")
    ref = standard_uncertainties(objective, jacobian="autograd")
    np.testing.assert_allclose(auto.su, ref.su, rtol=1e-4)
    with pytest.raises(Exception, match="jacobian"):
        standard_uncertainties(objective, jacobian="forward")


def test_singular_direction_reported(problem):
    objective = problem
    model = objective.model
    # U = v² I at v = 0 has zero gradient: the data cannot determine v there
    with torch.no_grad():
        saved = model.asu.adp.detach().clone()
        model.asu.adp.zero_()
    try:
        su = standard_uncertainties(objective)
    finally:
        with torch.no_grad():
            model.asu.adp.copy_(saved)
    assert su.singular_directions and "adp" in " ".join(su.singular_directions)


@pytest.mark.parametrize("value,su,text", [(0.12345, 0.00023, "0.1235(2)"), (0.12345, 0.00017, "0.12345(17)"), (0.12345, 0.0012, "0.1235(12)"),
                                           (0.5, 0.03, "0.50(3)"), (1.0, None, "1.0"), (0.25, 0.0, "0.25"),
                                           (1.0, 3e-20, "1.0"), (0.5, 2e-8, "0.50000000(2)")])
def test_format_with_su(value, su, text):
    assert format_with_su(value, su) == text


def test_auto_jacobian_choice_follows_reflections_per_frame(problem, monkeypatch):
    """autograd (exact) while a frame has ≤ 3 reflections per parameter, central differences beyond."""
    import edwidgets.refine.uncertainties as su_module

    calls = []
    real_rows, real_central = su_module._jacobian_rows, su_module._jacobian_central
    monkeypatch.setattr(su_module, "_jacobian_rows", lambda *a, **k: calls.append("autograd") or real_rows(*a, **k))
    monkeypatch.setattr(su_module, "_jacobian_central", lambda *a, **k: calls.append("central") or real_central(*a, **k))
    obs = problem.obs
    per_frame = obs.n_all / int(torch.unique(obs.frame_index).numel())
    n_par = problem.model.asu.positions.numel() + problem.model.asu.adp.numel()
    standard_uncertainties(problem)
    expected = "autograd" if per_frame <= 3 * n_par else "central"
    assert calls == [expected]
    standard_uncertainties(problem, groups=("adp",))  # fewer parameters: the other side of the rule
    n_adp = problem.model.asu.adp.numel()
    assert calls[1] == ("autograd" if per_frame <= 3 * n_adp else "central")
    assert set(calls) == {"autograd", "central"}  # this problem sits between the two


def test_sigma_weighted_loss_gives_goodness_of_fit_one_on_counting_noise():
    """With w = 1/σ(I) (loss "wr2") and a right model, χ²/(n − p) is 1 for Poisson data; eq. 3's
    F-space weights on intensity differences are not variance weights and give a GoF far from 1."""
    truth = demo_crystal()
    exp, _ = synthetic_rotation_experiment(truth, 12, thickness=350.0, g_max=1.2, sg_centre=0.015,
                                           i_max=2e3, noise=True, seed=11)
    gof = {}
    for loss in ("wr2", "wr_all"):
        forward = ForwardModel(exp, truth, g_max=1.2, sg_max=0.015, n_samples=3, selection=None)
        model = RefinementModel(truth, exp.frame_angle_deg, anisotropic=None, refine={"thickness": False},
                                thickness_model=make_thickness_model("constant", exp.frame_angle_deg, 350.0))
        objective = Objective(forward, model, loss=loss)
        asu, obs = model.asu, objective.obs
        n_pos = asu.positions.numel()
        w, i_o = (obs.sigma_weight, obs.i_measured) if loss == "wr2" else (obs.weight, obs.i_obs)

        def residuals(x):
            with torch.no_grad():
                asu.positions.copy_(torch.as_tensor(x[:n_pos]))
                asu.adp.copy_(torch.as_tensor(x[n_pos:]))
                return (w * (i_o - objective.evaluate().i_calc)).numpy()

        x0 = torch.cat([asu.positions.detach(), asu.adp.detach()]).numpy().copy()
        fit = least_squares(residuals, x0, jac="3-point", xtol=1e-12, ftol=1e-12, gtol=1e-12)
        residuals(fit.x)
        su = standard_uncertainties(objective, jacobian="autograd")
        assert su.n_obs > 120
        gof[loss] = su.goodness_of_fit
    assert 0.8 < gof["wr2"] < 1.3
    assert gof["wr_all"] > 3.0
