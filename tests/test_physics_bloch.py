"""Bloch-wave propagation against analytic results (physics-notes §11 items 1, 2, 5, 6)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from edwidgets.physics.bloch import _divided_differences, propagate, structure_matrix, thickness_to_tau
from edwidgets.physics.constants import electron_wavelength, relativistic_gamma

K200 = 1.0 / electron_wavelength(200.0)


def two_beam_matrix(u_g: complex, s: np.ndarray) -> torch.Tensor:
    """Ā for beams {000, g} with coupling U_g and excitation errors s (normal along the beam)."""
    s = torch.as_tensor(s, dtype=torch.float64)
    couplings = torch.tensor([0.0, u_g, np.conj(u_g)], dtype=torch.complex128)  # U_0, U_g, U_-g
    index = torch.tensor([[0, 2], [1, 0]])  # (i, j) → U_{g_i − g_j}
    exc = torch.stack([torch.zeros_like(s), s], dim=-1)
    n = len(s)
    return structure_matrix(couplings, index, exc, torch.zeros(n, 2, dtype=torch.float64), torch.full((n,), K200, dtype=torch.float64), K200)


def pendellosung(t, s, xi):
    s_eff = np.sqrt(s**2 + xi**-2)
    return np.sin(np.pi * t * s_eff) ** 2 / (xi * s_eff) ** 2


@pytest.mark.parametrize("method", ["eigen", "matrix_exp"])
def test_two_beam_pendellosung_matches_analytic(method):
    u_g = 0.0123 * np.exp(0.7j)  # Å⁻², any phase
    xi = K200 / abs(u_g)
    s = np.array([-0.004, -0.001, 0.0, 0.0007, 0.003])
    t = np.linspace(0.0, 3000.0, 31)
    a = two_beam_matrix(u_g, s)
    tau = thickness_to_tau(torch.as_tensor(t), torch.full((len(s),), K200, dtype=torch.float64))
    phi = propagate(a, tau, method)
    got = (phi.abs() ** 2)[:, :, 1].numpy()
    expected = pendellosung(t[None, :], s[:, None], xi)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose((phi.abs() ** 2).sum(-1).numpy(), 1.0, atol=1e-12)


def test_two_beam_integrated_rocking_curve_blackman():
    """∫ I_g ds = (π / 2ξ) ∫₀^{2πt/ξ} J₀(x) dx (Blackman), integrated numerically over s."""
    u_g = 0.01
    xi = K200 / u_g
    t = 1500.0
    s = np.linspace(-0.08, 0.08, 16001)
    a = two_beam_matrix(u_g, s)
    tau = thickness_to_tau(torch.tensor([t], dtype=torch.float64), torch.full((len(s),), K200, dtype=torch.float64))
    curve = (propagate(a, tau).abs() ** 2)[:, 0, 1].numpy()
    # tails beyond ±0.08 fall as 1/(ξ s)²: add them analytically (mean of sin² is 1/2)
    tail = 2 * 0.5 / (xi**2 * 0.08)
    integral = integrate.trapezoid(curve, s) + tail
    blackman = math.pi / (2 * xi) * integrate.quad(special.j0, 0.0, 2 * math.pi * t / xi)[0]
    assert integral == pytest.approx(blackman, rel=2e-3)


def random_hermitian(n, batch, seed, degenerate=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, n, dtype=torch.complex128, generator=gen)
    h = 0.5 * (x + x.mH)
    if degenerate:
        # exactly repeated eigenvalues, as at a zone axis
        q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.complex128, generator=gen))
        lam = torch.tensor([1.0, 1.0, 1.0, -2.0, 0.5, 0.5][:n] + [3.0] * max(0, n - 6), dtype=torch.complex128)
        h[0] = q @ torch.diag(lam) @ q.mH
    return h


def scalar_loss(phi):
    weights = torch.linspace(0.5, 2.0, phi.shape[-1], dtype=torch.float64)
    return ((phi.real**2 + phi.imag**2) * weights).sum() + (phi.real * phi.imag).sum()


@pytest.mark.parametrize("degenerate", [False, True])
def test_eigen_backward_matches_matrix_exp_autograd(degenerate):
    a = random_hermitian(6, 3, seed=1, degenerate=degenerate)
    tau = torch.rand(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 4
    grads = {}
    for method in ("eigen", "matrix_exp"):
        a_ = a.clone().requires_grad_()
        tau_ = tau.clone().requires_grad_()
        grads[method] = torch.autograd.grad(scalar_loss(propagate(a_, tau_, method)), [a_, tau_])
    for g_eigen, g_exp in zip(grads["eigen"], grads["matrix_exp"]):
        assert torch.isfinite(g_eigen).all()
        torch.testing.assert_close(g_eigen, g_exp, atol=1e-11, rtol=1e-10)


def test_plain_eigh_autograd_fails_at_degeneracy_where_eigen_does_not():
    """The trap of physics-notes §6, kept as a test so the default path never regresses to it."""
    # exactly repeated eigenvalues, as the symmetric beams of a zone axis give
    a = torch.diag(torch.tensor([1.0, 1.0, 2.0, 2.0, -1.0, 0.5], dtype=torch.complex128))[None]
    a[0, 0, 4] = a[0, 4, 0] = 0.2
    a.requires_grad_()
    tau = torch.tensor([[1.3]], dtype=torch.float64)
    (grad_plain,) = torch.autograd.grad(scalar_loss(propagate(a, tau, "eigh_autograd")), [a])
    (grad_exact,) = torch.autograd.grad(scalar_loss(propagate(a, tau, "eigen")), [a])
    assert not torch.isfinite(grad_plain).all()
    assert torch.isfinite(grad_exact).all()


def test_eigen_path_gradcheck_hermitian_input():
    """Finite differences (float64) through a Hermitian parameterisation, with degenerate start."""
    base = random_hermitian(5, 2, seed=4, degenerate=True)

    def f(real_part, imag_part, tau):
        x = torch.complex(real_part, imag_part)
        h = base + 0.5 * (x + x.mH)
        return (propagate(h, tau).abs() ** 2)

    re = torch.zeros(2, 5, 5, dtype=torch.float64, requires_grad=True)
    im = torch.zeros(2, 5, 5, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([[0.7, 2.0], [1.1, 0.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (re, im, tau), eps=1e-6, atol=1e-7)


def test_divided_differences_limit_is_derivative():
    lam = torch.tensor([[0.3, 0.3, 0.3 + 1e-13, 2.0]], dtype=torch.float64)
    tau = torch.tensor([1.7], dtype=torch.float64)
    gamma = _divided_differences(lam, tau)[0]
    deriv = 1j * 1.7 * np.exp(1j * 1.7 * 0.3)
    assert abs(gamma[0, 1].item() - deriv) < 1e-14
    assert abs(gamma[0, 2].item() - deriv) < 1e-12
    exact = (np.exp(1j * 1.7 * 0.3) - np.exp(1j * 1.7 * 2.0)) / (0.3 - 2.0)
    assert abs(gamma[0, 3].item() - exact) < 1e-14


def test_constants_match_physics_notes():
    assert electron_wavelength(200) == pytest.approx(0.0250793, abs=2e-7)
    assert relativistic_gamma(200) == pytest.approx(1.391390, abs=2e-6)
    assert 1 / electron_wavelength(200) == pytest.approx(39.8735, abs=2e-4)
    assert electron_wavelength(300) == pytest.approx(0.0196875, abs=2e-7)
    assert relativistic_gamma(300) == pytest.approx(1.587085, abs=2e-6)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_divided_differences_against_high_precision(dtype, tolerance):
    """Gaps from 0 to far apart, straddling the Taylor switch, at realistic phases τλ/2 ≈ 50 rad."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    tau = 47.0
    base = 2.1
    gaps = [0.0, 1e-12, 1e-7, 1e-4, 2e-3, 0.0021, 0.0025, 0.01, 0.0213, 0.0215, 0.3, 1.5]  # x-gap = τ·gap/2
    lam64 = torch.tensor([[base + g for g in gaps]], dtype=torch.float64)
    lam = lam64.to(dtype)
    gamma = _divided_differences(lam, torch.tensor([tau], dtype=dtype))[0].to(torch.complex128)
    gamma_conj = _divided_differences(lam, torch.tensor([tau], dtype=dtype), conjugate=True)[0].to(torch.complex128)
    values = [mpmath.mpf(float(v)) for v in lam.double()[0]]  # the rounded inputs, exactly
    worst = 0.0
    for i, a in enumerate(values):
        for j, b in enumerate(values):
            if a == b:
                exact = 1j * tau * mpmath.expj(tau * a)
            else:
                exact = (mpmath.expj(tau * a) - mpmath.expj(tau * b)) / (a - b)
            exact = complex(exact)
            scale = tau  # |Γ| ≤ τ
            worst = max(worst, abs(gamma[i, j].item() - exact) / scale, abs(gamma_conj[i, j].item() - exact.conjugate()) / scale)
    assert worst < tolerance, worst


def absorbing(hermitian, kappa, seed):
    """Ā = H + iκK with K Hermitian positive semi-definite, as an absorptive potential's part is."""
    x = random_hermitian(hermitian.shape[-1], hermitian.shape[0], seed=seed)
    return hermitian + 1j * kappa * (x @ x.mH) / hermitian.shape[-1]


@pytest.mark.parametrize("degenerate", [False, True])
def test_general_eigen_path_matches_matrix_exp(degenerate):
    """Forward and both gradients of the absorption path against matrix_exp autograd, also where
    the Hermitian part is exactly degenerate."""
    a = absorbing(random_hermitian(6, 3, seed=1, degenerate=degenerate), 0.1, seed=5)
    tau = torch.rand(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 4
    out, grads = {}, {}
    for method in ("eig", "matrix_exp"):
        a_ = a.clone().requires_grad_()
        tau_ = tau.clone().requires_grad_()
        out[method] = propagate(a_, tau_, method)
        grads[method] = torch.autograd.grad(scalar_loss(out[method]), [a_, tau_])
    torch.testing.assert_close(out["eig"], out["matrix_exp"], atol=1e-12, rtol=1e-10)
    assert float((out["eig"].detach().abs() ** 2).sum(-1).max()) < 1.0  # absorption loses current
    for g_eig, g_exp in zip(grads["eig"], grads["matrix_exp"]):
        torch.testing.assert_close(g_eig, g_exp, atol=1e-10, rtol=1e-9)


def test_general_eigen_path_without_absorption_is_the_hermitian_path():
    a = random_hermitian(7, 2, seed=3)
    tau = torch.tensor([[0.4, 3.0], [1.2, 2.2]], dtype=torch.float64)
    a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    phi_eig, phi_eigen = propagate(a1, tau, "eig"), propagate(a2, tau, "eigen")
    torch.testing.assert_close(phi_eig, phi_eigen, atol=1e-12, rtol=1e-10)
    (g1,), (g2,) = torch.autograd.grad(scalar_loss(phi_eig), [a1]), torch.autograd.grad(scalar_loss(phi_eigen), [a2])
    torch.testing.assert_close(g1, g2, atol=1e-11, rtol=1e-10)


def test_general_eigen_path_gradcheck():
    base = absorbing(random_hermitian(5, 2, seed=4, degenerate=True), 0.05, seed=9)

    def f(real_part, imag_part, tau):
        return propagate(base + torch.complex(real_part, imag_part), tau, "eig").abs() ** 2

    re = torch.zeros(2, 5, 5, dtype=torch.float64, requires_grad=True)
    im = torch.zeros(2, 5, 5, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([[0.7, 2.0], [1.1, 0.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (re, im, tau), eps=1e-6, atol=1e-7)
