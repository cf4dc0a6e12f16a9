"""Thickness models: hand values, positivity, ranges, sampling statistics, warm starts, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from edwidgets.errors import ExperimentError
from edwidgets.refine.thickness import (
    ConstantThickness,
    GeometricThickness,
    PerFrameThickness,
    QuadraticThickness,
    ThicknessModel,
    ThicknessNN,
)

F64 = torch.float64
RANGE = (-60.0, 60.0)
THETA = torch.linspace(-60.0, 60.0, 121, dtype=F64)
SINE = 800.0 + 250.0 * torch.sin(2 * math.pi * (THETA + 60.0) / 90.0)  # non-convex, 1.3 periods


def all_models() -> list[ThicknessModel]:
    return [
        ConstantThickness(900.0),
        PerFrameThickness(torch.linspace(500, 900, 5, dtype=F64), torch.tensor([-40.0, -20.0, 0.0, 20.0, 40.0])),
        GeometricThickness(700.0, w=0.7, theta0=5.0),
        QuadraticThickness(100.0, -50.0, 600.0, theta_range=RANGE),
        ThicknessNN(RANGE, seed=1),
        ThicknessNN(RANGE, quadratic_prior=True, seed=2),
    ]


@pytest.mark.parametrize("model", all_models(), ids=lambda m: type(m).__name__)
def test_shapes_positivity_dtype_describe(model):
    for shape in [(7,), (2, 3), ()]:
        theta = torch.empty(shape, dtype=F64).uniform_(-60, 60)
        t = model(theta)
        assert t.shape == theta.shape and t.dtype == F64
        assert (t > 0).all()
        mu, sigma = model.distribution(theta)
        assert mu.shape == sigma.shape == theta.shape and (sigma >= 0).all()
    d = model.describe()
    assert isinstance(d, dict) and "model" in d
    assert all(isinstance(v, (str, int, float, list, dict, type(None))) for v in d.values())


def test_plate_rod_formula_by_hand():
    plate = GeometricThickness(1000.0, w=1.0, theta0=10.0)
    t = plate(torch.tensor([10.0, 70.0, -50.0, 40.0], dtype=F64))
    assert t.tolist() == pytest.approx([1000.0, 2000.0, 2000.0, 1000.0 / math.cos(math.radians(30))], rel=1e-5)
    rod = GeometricThickness(1000.0, w=0.0)
    assert rod(torch.tensor([-60.0, 0.0, 45.0], dtype=F64)).tolist() == pytest.approx([1000.0] * 3, rel=1e-5)
    mixed = GeometricThickness(1000.0, w=0.25, theta0=10.0)
    assert mixed(torch.tensor([70.0], dtype=F64)).item() == pytest.approx(1000.0 * (0.75 + 0.25 * 2.0), rel=1e-12)
    with pytest.raises(ExperimentError):
        GeometricThickness(1000.0, w=1.5)


def test_quadratic_values_and_softplus_positivity():
    q = QuadraticThickness(100.0, -50.0, 600.0, theta_range=RANGE)
    # u = −1, 0, 1 at −60°, 0°, 60°: 100 + 50 + 600, 600, 100 − 50 + 600
    assert q(torch.tensor([-60.0, 0.0, 60.0], dtype=F64)).tolist() == pytest.approx([750.0, 600.0, 650.0], rel=1e-12)
    negative = QuadraticThickness(-900.0, 0.0, 100.0, theta_range=RANGE)  # raw −800 Å at the ends
    t = negative(THETA)
    assert (t >= 1.0).all() and t.max().item() == pytest.approx(100.0, rel=1e-9)


def test_per_frame_interpolates():
    m = PerFrameThickness(torch.tensor([300.0, 100.0, 200.0], dtype=F64), torch.tensor([10.0, -10.0, 0.0]))
    t = m(torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0, 30.0, -30.0], dtype=F64))
    assert t.tolist() == pytest.approx([100.0, 150.0, 200.0, 250.0, 300.0, 300.0, 100.0], rel=1e-12)
    by_index = PerFrameThickness(torch.tensor([5.0, 6.0], dtype=F64))
    assert by_index(torch.tensor([0.0, 1.0], dtype=F64)).tolist() == pytest.approx([5.0, 6.0])
    with pytest.raises(ExperimentError):
        PerFrameThickness(torch.tensor([1.0, -2.0]))
    with pytest.raises(ExperimentError):
        PerFrameThickness(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 3.0]))


def test_nn_mean_stays_inside_thickness_range():
    m = ThicknessNN(RANGE, thickness_range=(150.0, 1200.0), sigma_range=(2.0, 30.0), seed=0)
    with torch.no_grad():
        for p in m.net.parameters():  # drive the network hard into saturation
            p.mul_(60.0)
    theta = torch.linspace(-300.0, 300.0, 601, dtype=F64)
    mu, sigma = m.distribution(theta)
    assert (mu >= 150.0).all() and (mu <= 1200.0).all()
    assert (mu.max() - mu.min()) > 100.0  # the test means something: μ does move
    assert (sigma >= 2.0).all() and (sigma <= 30.0).all()
    fresh = ThicknessNN(RANGE, thickness_range=(150.0, 1200.0), t_init=400.0, seed=0)
    assert fresh(THETA).sub(400.0).abs().max().item() < 60.0  # starts near t_init


def test_quadratic_prior_keeps_a_positive():
    m = ThicknessNN(RANGE, quadratic_prior=True, prior=(200.0, 10.0, 900.0), seed=0)
    q = m.prior_thickness(torch.tensor([-60.0, 0.0, 60.0], dtype=F64))
    assert q.tolist() == pytest.approx([1090.0, 900.0, 1110.0], rel=1e-12)
    # with the network's residual at zero, μ equals the prior
    with torch.no_grad():
        m.net[-1].weight.zero_()
        m.net[-1].bias.zero_()
    assert m(torch.tensor([-60.0, 0.0, 60.0], dtype=F64)).tolist() == pytest.approx([1090.0, 900.0, 1110.0], rel=1e-9)
    # push hard towards negative curvature: a must stay > 0
    opt = torch.optim.Adam([m.log_a], lr=0.5)
    u = torch.tensor([-60.0, 0.0, 60.0], dtype=F64)
    for _ in range(100):
        opt.zero_grad()
        p = m.prior_thickness(u)
        (p[0] + p[2] - 2 * p[1]).backward()  # = 2a
        opt.step()
    a = m.describe()["quadratic_prior"]["a_A"]
    assert 0.0 < a < 1.0
    with pytest.raises(ExperimentError):
        ThicknessNN(RANGE, quadratic_prior=True, prior=(-1.0, 0.0, 900.0))


def test_reparameterised_samples_statistics():
    m = ThicknessNN(RANGE, sigma_range=(5.0, 40.0), seed=3)
    theta = torch.tensor([-30.0, 0.0, 45.0], dtype=F64)
    mu, sigma = m.distribution(theta)
    n = 40000
    g = torch.Generator().manual_seed(11)
    s = m.sample(theta, n, generator=g)
    assert s.shape == (n, 3)
    assert ((s.mean(0) - mu).abs() < 5 * sigma / math.sqrt(n)).all()
    assert ((s.std(0) / sigma - 1).abs() < 0.03).all()
    # same generator seed, same samples; gradients reach μ and σ through the samples
    s2 = m.sample(theta, n, generator=torch.Generator().manual_seed(11))
    assert torch.equal(s.detach(), s2.detach())
    # a deterministic model samples its mean
    c = ConstantThickness(500.0)
    assert torch.allclose(c.sample(theta, 4), torch.full((4, 3), 500.0, dtype=F64), rtol=1e-14)


def test_nn_deterministic_given_seed():
    a, b = ThicknessNN(RANGE, seed=5), ThicknessNN(RANGE, seed=5)
    assert torch.equal(a(THETA), b(THETA))
    torch.manual_seed(9)
    c = ThicknessNN(RANGE)
    torch.manual_seed(9)
    d = ThicknessNN(RANGE)
    assert torch.equal(c(THETA), d(THETA))
    assert not torch.equal(a(THETA), c(THETA))


@pytest.mark.parametrize("prior", [False, True])
def test_nn_fit_to_recovers_sine_profile(prior):
    m = ThicknessNN(RANGE, thickness_range=(100.0, 2000.0), quadratic_prior=prior, seed=0)
    rms = m.fit_to(THETA, SINE, steps=300)
    err = (m(THETA) - SINE).abs().max().item()
    assert rms < 3.0 and err < 6.0, (rms, err)
    # between the fitted points as well
    mid = THETA[:-1] + 0.5
    truth = 800.0 + 250.0 * torch.sin(2 * math.pi * (mid + 60.0) / 90.0)
    assert (m(mid) - truth).abs().max().item() < 6.0


def test_simple_models_fit_to():
    geo_truth = GeometricThickness(650.0, w=0.6, theta0=-8.0)
    profile = geo_truth(THETA).detach()
    geo = GeometricThickness(900.0, w=0.5, theta0=0.0)
    assert geo.fit_to(THETA, profile, steps=200) < 1e-3
    d = geo.describe()
    assert d["t0_A"] == pytest.approx(650.0, rel=1e-5) and d["w"] == pytest.approx(0.6, rel=1e-4)
    assert d["theta0_deg"] == pytest.approx(-8.0, abs=1e-3)

    quad = QuadraticThickness(0.0, 0.0, 500.0, theta_range=RANGE)
    u = THETA / 60.0
    assert quad.fit_to(THETA, 120.0 * u**2 - 30.0 * u + 700.0) < 1e-8
    assert [quad.describe()[k] for k in ("a_A", "b_A", "c_A")] == pytest.approx([120.0, -30.0, 700.0], rel=1e-9)

    const = ConstantThickness(100.0)
    const.fit_to(THETA, SINE)
    assert const.describe()["t0_A"] == pytest.approx(SINE.mean().item(), rel=1e-12)

    per = PerFrameThickness(torch.full((121,), 500.0, dtype=F64), THETA)
    assert per.fit_to(THETA, SINE) < 1e-9

    with pytest.raises(ExperimentError):
        ThicknessNN(RANGE, thickness_range=(100.0, 900.0)).fit_to(THETA, SINE)  # leaves the range
    with pytest.raises(ExperimentError):
        const.fit_to(THETA, SINE[:5])


@pytest.mark.parametrize("model", all_models(), ids=lambda m: type(m).__name__)
def test_gradients_reach_all_parameters(model):
    theta = torch.linspace(-55.0, 55.0, 9, dtype=F64)
    loss = (model.sample(theta, 3, generator=torch.Generator().manual_seed(0)) ** 2).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bad_arguments():
    with pytest.raises(ExperimentError):
        ConstantThickness(-5.0)
    with pytest.raises(ExperimentError):
        ThicknessNN((10.0, 10.0))
    with pytest.raises(ExperimentError):
        ThicknessNN(RANGE, thickness_range=(500.0, 100.0))
    with pytest.raises(ExperimentError):
        ThicknessNN(RANGE, thickness_range=(100.0, 500.0), t_init=600.0)
    with pytest.raises(ExperimentError):
        ConstantThickness(5.0)(torch.tensor([float("nan")]))
    with pytest.raises(ExperimentError):
        ThicknessNN(RANGE, seed=0).sample(THETA, 0)


def test_float32_module():
    m = ThicknessNN(RANGE, seed=0).to(torch.float32)
    t = m(THETA)
    assert t.dtype == torch.float32 and torch.allclose(t.double(), ThicknessNN(RANGE, seed=0)(THETA), rtol=1e-5)
    g = GeometricThickness(500.0).to(torch.float32)
    assert g(torch.tensor([0.0, 30.0])).dtype == torch.float32
