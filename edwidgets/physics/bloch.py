"""Bloch-wave structure matrix and propagation with exact, NaN-free gradients.

Conventions (physics-notes §3–§6): plane waves exp(+2πi(k+g)·r), so the potential coefficient
of beam difference g_i − g_j is U_{g_i−g_j} = γ conj(F(g_i − g_j)) / (πΩ). With an entrance-surface
normal n, M_i = (1 + g_n,i/K_n)^(−1/2) symmetrises the problem:

    Ā_ii = 2K s_i M_i²,   Ā_ij = U_{g_i−g_j} M_i M_j,   φ(t) = exp(iπ t Ā / K_n) e_000.

The elastic mean potential U_0 is absorbed into K (the diagonal keeps only absorption), so the
transmitted wave carries no global phase that depends on it.

Three propagation paths, all returning φ [batch, n_thickness, n_beams]:

* ``"eigen"`` (default): Hermitian eigendecomposition forward and a Daleckii–Krein
  divided-difference backward written out by hand. The divided differences use the identity
  (e^{iτa} − e^{iτb})/(a − b) = iτ e^{iτ(a+b)/2} sinc(τ(a−b)/2), exact and finite for equal or
  nearly equal eigenvalues, so gradients stay correct at exact zone axes.
* ``"eigh_autograd"``: the same forward differentiated by torch's own eigh backward (NaN at
  degeneracies; kept for benchmarks and to demonstrate the trap).
* ``"eig"``: general (non-Hermitian) eigendecomposition Ā = V Λ V⁻¹ for absorption, with the same
  divided-difference backward written for a diagonalizable matrix (complex λ; V⁻¹ by solves).
  About 4× the cost of ``"eigen"`` per matrix; exact also where the Hermitian part is degenerate
  (absorption splits the eigenvalues, and equal ones take the derivative limit).
* ``"matrix_exp"``: torch.matrix_exp, exact for any matrix (the reference the others are tested on).
"""
from __future__ import annotations

import math

import torch

METHODS = ("eigen", "eig", "eigh_autograd", "matrix_exp")


def coupling_potentials(structure_factors: torch.Tensor, prefactor: float, zero_index: int, absorption: float = 0.0) -> torch.Tensor:
    """U_d (Å⁻²) for each distinct beam difference d from F(d).

    ``prefactor`` = γ/(πΩ). The proportional absorption model adds i·κ·U_d to every coefficient,
    including d = 0, whose elastic part is dropped (absorbed into K).
    """
    u = prefactor * structure_factors.conj()
    if absorption:
        u = u * complex(1.0, absorption)
    elastic_zero = torch.zeros_like(u)
    elastic_zero[zero_index] = u[zero_index].real
    return u - elastic_zero


def structure_matrix(
    couplings: torch.Tensor,
    coupling_index: torch.Tensor,
    excitation_error: torch.Tensor,
    g_normal: torch.Tensor,
    k_normal: torch.Tensor,
    k: float,
) -> torch.Tensor:
    """Symmetrised structure matrices Ā [batch, N, N].

    couplings [D] complex (U_d), coupling_index [N, N] into it, excitation_error [batch, N] (Å⁻¹),
    g_normal [batch, N] = g·n, k_normal [batch] = K·n.
    """
    ratio = 1.0 + g_normal / k_normal[:, None]
    m = torch.rsqrt(ratio)
    u = couplings[coupling_index]  # [N, N]
    a = u[None] * (m[:, :, None] * m[:, None, :])
    diagonal = (2.0 * k * excitation_error / ratio).to(a.dtype)
    return a + torch.diag_embed(diagonal)


#: Below this |x_i − x_j| the divided differences use sinc's Taylor series (to x⁶): its truncation
#: error (x⁸/9!) and the cancellation error of sin(x_i − x_j) formed from products (ε|x|/δ) both
#: stay far below the dtype's rounding of the eigenvalues themselves.
SINC_TAYLOR_BELOW = {torch.float64: 0.05, torch.float32: 0.5}


def _sinc_taylor(diff: torch.Tensor) -> torch.Tensor:
    """sin(x)/x to x⁶, for |x| below ``SINC_TAYLOR_BELOW``."""
    d2 = diff * diff
    return 1.0 - d2 / 6.0 * (1.0 - d2 / 20.0 * (1.0 - d2 / 42.0))


def _divided_differences(lam: torch.Tensor, tau: torch.Tensor, conjugate: bool = False) -> torch.Tensor:
    """Γ_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j) for f(λ) = exp(iτλ); lam [B, N], tau [B] → [B, N, N].

    With x = τλ/2: Γ_ij = iτ e^{i(x_i+x_j)} sinc(x_i − x_j), exact and finite for equal or nearly
    equal eigenvalues. Every transcendental is taken on the N values only: e^{i(x_i+x_j)} = h_i h_j
    and sin(x_i − x_j) = s_i c_j − c_i s_j, so the N² work is multiplications (half the time of
    sin/cos/sinc on N² elements). ``conjugate`` returns conj(Γ), which is what the backward needs.
    """
    x = (0.5 * tau[:, None]) * lam
    s, c = torch.sin(x), torch.cos(x)
    diff = x[:, :, None] - x[:, None, :]
    sine = s[:, :, None] * c[:, None, :]
    sine.sub_(c[:, :, None] * s[:, None, :])
    small = diff.abs() < SINC_TAYLOR_BELOW.get(lam.dtype, 0.05)
    sinc = torch.where(small, _sinc_taylor(diff), sine.div_(torch.where(small, torch.ones_like(diff), diff)))
    sinc.mul_(tau[:, None, None])
    h = torch.polar(torch.ones_like(x), x)
    if conjugate:
        h = h.conj()
    out = h[:, :, None] * h[:, None, :]
    out.mul_(sinc)
    return out.mul_(-1j if conjugate else 1j)


def decompose(a: torch.Tensor, hermitian: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eigenvalues λ [B, N], eigenvectors V [B, N, N] and V⁻¹ e_000 [B, N] of structure matrices.

    Hermitian (no absorption): eigh, V⁻¹ = Vᴴ. Otherwise the general eig, V⁻¹ e_000 by a solve.
    Without gradients; the propagation paths differentiate through their own backward.
    """
    if hermitian:
        lam, vec = torch.linalg.eigh(a)
        return lam, vec, vec[:, 0, :].conj()
    lam, vec = torch.linalg.eig(a)
    e0 = torch.zeros(a.shape[0], a.shape[-1], 1, dtype=a.dtype, device=a.device)
    e0[:, 0] = 1.0
    return lam, vec, torch.linalg.solve(vec, e0)[..., 0]


class _EigenPropagation(torch.autograd.Function):
    """φ[b, t] = V diag(exp(iτ_bt λ)) Vᴴ e_000 with the exact divided-difference backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        lam, vec, first_row = decompose(a)  # first_row = Vᴴ e_000
        phases = tau[:, :, None] * lam[:, None, :]  # [B, T, N]
        exp_phase = torch.polar(torch.ones_like(phases), phases)
        coeff = exp_phase * first_row[:, None, :]
        phi = torch.einsum("bgn,btn->btg", vec, coeff)
        ctx.save_for_backward(lam, vec, tau, coeff)
        return phi

    @staticmethod
    def backward(ctx, grad_phi: torch.Tensor):
        lam, vec, tau, coeff = ctx.saved_tensors
        grad_a = grad_tau = None
        projected = torch.einsum("bgn,btg->btn", vec.conj(), grad_phi)  # Vᴴ G  [B, T, N]
        if ctx.needs_input_grad[0]:
            first_row_conj = vec[:, 0, :]  # conj(Vᴴ e_000)
            # Σ_t Γ̄_t ∘ (p_t v̄₀ᵀ): accumulated in place, so one thickness costs one N² pass
            inner = _divided_differences(lam, tau[:, 0], conjugate=True)
            inner.mul_(projected[:, 0, :, None] * first_row_conj[:, None, :])
            for t in range(1, tau.shape[1]):
                gamma = _divided_differences(lam, tau[:, t], conjugate=True)
                inner.addcmul_(gamma, projected[:, t, :, None] * first_row_conj[:, None, :])
            grad_a = torch.matmul(torch.matmul(vec, inner), vec.mH)
        if ctx.needs_input_grad[1]:
            # dφ/dτ = V (iλ ∘ coeff)
            dphi = 1j * lam[:, None, :] * coeff
            grad_tau = (projected.conj() * dphi).real.sum(-1)
        return grad_a, grad_tau


def _complex_divided_differences(lam: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Γ_ij for complex eigenvalues (absorption): iτ e^{i(x_i+x_j)} sinc(x_i − x_j), x = τλ/2.

    sin of the complex difference is taken directly: products of sines of complex x grow like
    e^{|Im x|} and would cancel badly.
    """
    x = (0.5 * tau[:, None]) * lam
    diff = x[:, :, None] - x[:, None, :]
    small = diff.abs() < SINC_TAYLOR_BELOW.get(lam.real.dtype, 0.05)
    sinc = torch.where(small, _sinc_taylor(diff), torch.sin(diff) / torch.where(small, torch.ones_like(diff), diff))
    h = torch.exp(1j * x)
    return (h[:, :, None] * h[:, None, :]) * sinc * (1j * tau[:, None, None])


class _GeneralEigenPropagation(torch.autograd.Function):
    """φ[b, t] = V diag(exp(iτ_bt λ)) V⁻¹ e_000 for a diagonalizable (non-Hermitian) Ā.

    Backward (adjoint of the Daleckii–Krein Fréchet derivative): with p = Vᴴ G and c = V⁻¹ e_000,
    ∂L/∂Ā = V⁻ᴴ (Σ_t conj(Γ_t) ∘ (p_t c̄ᵀ)) Vᴴ.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        lam, vec, first = decompose(a, hermitian=False)
        coeff = torch.exp(1j * (tau[:, :, None] * lam[:, None, :])) * first[:, None, :]
        phi = torch.einsum("bgn,btn->btg", vec, coeff)
        ctx.save_for_backward(lam, vec, tau, first, coeff)
        return phi

    @staticmethod
    def backward(ctx, grad_phi: torch.Tensor):
        lam, vec, tau, first, coeff = ctx.saved_tensors
        grad_a = grad_tau = None
        projected = torch.einsum("bgn,btg->btn", vec.conj(), grad_phi)  # Vᴴ G  [B, T, N]
        if ctx.needs_input_grad[0]:
            inner = torch.zeros(vec.shape, dtype=vec.dtype, device=vec.device)
            for t in range(tau.shape[1]):
                gamma = _complex_divided_differences(lam, tau[:, t]).conj()
                inner += gamma * (projected[:, t, :, None] * first.conj()[:, None, :])
            grad_a = torch.linalg.solve(vec.mH, inner @ vec.mH)
        if ctx.needs_input_grad[1]:
            dphi = 1j * lam[:, None, :] * coeff
            grad_tau = (projected.conj() * dphi).real.sum(-1)
        return grad_a, grad_tau


def propagate(a: torch.Tensor, tau: torch.Tensor, method: str = "eigen") -> torch.Tensor:
    """Exit-face amplitudes φ [B, T, N] for structure matrices a [B, N, N] and τ = π t / K_n [B, T].

    Any number of thicknesses share one decomposition on the eigen paths.
    """
    if a.ndim != 3 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"structure matrices must be [batch, N, N], got {tuple(a.shape)}")
    if tau.ndim != 2 or tau.shape[0] != a.shape[0]:
        raise ValueError(f"tau must be [batch, n_thickness] matching batch {a.shape[0]}, got {tuple(tau.shape)}")
    tau = tau.to(a.real.dtype)
    if method == "eigen":
        return _EigenPropagation.apply(a, tau)
    if method == "eig":
        return _GeneralEigenPropagation.apply(a, tau)
    if method == "eigh_autograd":
        lam, vec = torch.linalg.eigh(a)
        phases = tau[:, :, None] * lam[:, None, :]
        coeff = torch.polar(torch.ones_like(phases), phases) * vec[:, 0, :].conj()[:, None, :]
        return torch.einsum("bgn,btn->btg", vec, coeff)
    if method == "matrix_exp":
        columns = []
        for t in range(tau.shape[1]):
            generator = (1j * tau[:, t, None, None]) * a
            columns.append(torch.linalg.matrix_exp(generator)[:, :, 0])
        return torch.stack(columns, dim=1)
    raise ValueError(f"unknown propagation method {method!r}; choose one of {METHODS}")


def thickness_to_tau(thickness: torch.Tensor, k_normal: torch.Tensor) -> torch.Tensor:
    """τ = π t / K_n: thickness [B, T] or [T] (Å, along the surface normal), k_normal [B]."""
    if thickness.ndim == 1:
        thickness = thickness[None, :].expand(k_normal.shape[0], -1)
    return math.pi * thickness / k_normal[:, None]
