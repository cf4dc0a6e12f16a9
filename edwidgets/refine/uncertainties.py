"""Standard uncertainties of refined parameters from the least-squares normal matrix.

At the optimum, N = Jᵀ W J with J = ∂(k I_calc)/∂p (the *scaled* intensities, k the closed-form
frame scales, so scale correlations are included) from autograd (one backward pass per
reflection, through its own frame) or, with many reflections per frame and few parameters,
central differences of the same differentiable model, and W = diag(w²) with w the
weights of the refinement's loss: eq. 3's (Methods 4.2), or 1/σ(I_o) for the σ-weighted wR2
(then the goodness of fit is 1 for a right model and counting noise). Then C = N⁻¹ χ² / (n − p), χ² = Σ w² (I_o − k I_c)², and
σ(p) = √diag(C). Directions the data do not determine (N singular, e.g. a floating origin or
a parameter without effect) are handled with a pseudo-inverse and reported.

The s.u. are conditional on the parameters not included (by default the thickness model and
orientation corrections are held at their refined values): the thickness network has thousands
of weights and no meaningful individual s.u.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..crystal.symmetry import u_cart_to_cif
from .model import RefinementError

#: eigenvalues of the correlation-scaled normal matrix below RCOND × the largest are dropped.
RCOND = 1e-10


@dataclass
class Uncertainties:
    """Covariance of the refined parameters and s.u. of each site's coordinates and U.

    ``site_frac_su`` [n_sites, 3] (0 where symmetry fixes a coordinate, NaN when positions were
    not refined); ``site_u_iso_su`` [n_sites]; ``site_u_cif_su``: per site 6 s.u. (U11 U22 U33 U12
    U13 U23, CIF convention) or None for isotropic sites; ``site_u_cart_su`` [n_sites, 3, 3].
    """

    parameter_names: list[str]
    values: np.ndarray
    su: np.ndarray
    covariance: np.ndarray
    chi2: float
    n_obs: int
    n_params: int
    goodness_of_fit: float | None
    singular_directions: list[str] = field(default_factory=list)
    site_frac_su: np.ndarray | None = None
    site_u_iso_su: np.ndarray | None = None
    site_u_cart_su: np.ndarray | None = None
    site_u_cif_su: list | None = None

    def correlation(self) -> np.ndarray:
        d = np.sqrt(np.clip(np.diag(self.covariance), 1e-300, None))
        return self.covariance / np.outer(d, d)

    def summary(self) -> dict:
        return {
            "parameters": {n: {"value": float(v), "su": float(s)} for n, v, s in zip(self.parameter_names, self.values, self.su)},
            "chi2": self.chi2, "n_obs": self.n_obs, "n_params": self.n_params,
            "goodness_of_fit": self.goodness_of_fit, "singular_directions": list(self.singular_directions),
            "note": "conditional on the thickness model and orientations held at their refined values",
        }


def _jacobian_rows(outputs: torch.Tensor, inputs: list[torch.Tensor], chunk: int = 64) -> torch.Tensor:
    """[n_out, Σ numel(inputs)] by reverse-mode autograd (batched when the graph allows it)."""
    n = outputs.numel()
    width = sum(p.numel() for p in inputs)
    jac = torch.zeros(n, width, dtype=outputs.dtype)
    eye = torch.eye(n, dtype=outputs.dtype, device=outputs.device)

    def flat(grads):
        return torch.cat([torch.zeros(p.numel(), dtype=outputs.dtype) if g is None else g.reshape(-1).cpu()
                          for g, p in zip(grads, inputs)])

    try:
        for start in range(0, n, chunk):
            rows = eye[start:start + chunk]
            grads = torch.autograd.grad(outputs, inputs, grad_outputs=rows, retain_graph=True,
                                        is_grads_batched=True, allow_unused=True)
            jac[start:start + len(rows)] = torch.cat(
                [torch.zeros(len(rows), p.numel(), dtype=outputs.dtype) if g is None else g.reshape(len(rows), -1).cpu()
                 for g, p in zip(grads, inputs)], dim=1)
    except (RuntimeError, NotImplementedError):  # custom autograd functions without vmap support
        for i in range(n):
            grads = torch.autograd.grad(outputs[i], inputs, retain_graph=True, allow_unused=True)
            jac[i] = flat(grads)
    return jac


#: "auto" Jacobian: a reflection's backward pass touches only its own frame (its scale is that
#: frame's), so autograd costs ~ reflections per frame backward passes of one frame each, central
#: differences 2 forward passes of all frames per parameter
AUTOGRAD_ROWS_PER_PARAMETER = 3

#: central-difference steps for the Jacobian by dtype (parameters are Å displacements and √U /
#: Cholesky factors in Å); ~ε^(1/3) balances truncation O(h²) against rounding O(ε/h)
FD_STEP = {torch.float64: 1e-5, torch.float32: 2e-3}


def _jacobian_central(evaluate, inputs: list[torch.Tensor], step: float | None = None) -> torch.Tensor:
    """[n_out, Σ numel(inputs)] by central differences: two forward passes per parameter, no backward.

    Reverse mode needs one backward pass per reflection (the eigen propagation has no batched
    backward), each through one frame; with many reflections per frame and few parameters this is
    cheaper. Its error, O(step²) + O(ε/step), is ~1e-10 relative in float64 and ~1e-4 in float32.
    """
    if step is None:
        step = FD_STEP.get(inputs[0].dtype, 1e-5)
    columns = []
    with torch.no_grad():
        for p in inputs:
            flat = p.data.view(-1)
            for j in range(flat.numel()):
                original = flat[j].item()
                flat[j] = original + step
                plus = evaluate().detach().cpu()
                flat[j] = original - step
                minus = evaluate().detach().cpu()
                flat[j] = original
                columns.append((plus - minus) / (2.0 * step))
    return torch.stack(columns, dim=1)


def standard_uncertainties(objective, groups=("positions", "adp"), rcond: float = RCOND,
                           jacobian: str = "auto") -> Uncertainties:
    """s.u. of the refined parameters in ``groups`` at the model's current values (the optimum).

    ``jacobian``: "autograd" (exact; one backward pass per reflection, through its own frame only),
    "central" (two forward passes of every frame per parameter) or "auto": autograd unless a frame
    holds more than 3 reflections per parameter (then central differences are cheaper).
    """
    if jacobian not in ("auto", "autograd", "central"):
        raise RefinementError(f"jacobian must be 'auto', 'autograd' or 'central', got {jacobian!r}")
    model = objective.model
    asu = model.asu
    selected = [(g, p) for g in groups for p in model.group_parameters(g) if p.requires_grad and p.numel()]
    if not selected:
        raise RefinementError(f"no refined parameter in groups {groups}: nothing to give s.u. for")
    names: list[str] = []
    for g, p in selected:
        names += [f"{g}[{i}]" for i in range(p.numel())]
    inputs = [p for _, p in selected]
    ev = objective.evaluate()
    obs = objective.obs
    w, i_o = obs.weighted(objective.weighting)
    w = w.to(ev.i_calc.dtype)
    resid = (w * (i_o - ev.i_calc)).detach()
    n_par_total = sum(p.numel() for p in inputs)
    frames_with_data = max(1, int(torch.unique(obs.frame_index).numel()) if obs.frame_index is not None else 1)
    per_frame = ev.i_calc.numel() / frames_with_data
    if jacobian == "autograd" or (jacobian == "auto" and per_frame <= AUTOGRAD_ROWS_PER_PARAMETER * n_par_total):
        jac = _jacobian_rows(ev.i_calc, inputs)
    else:
        jac = _jacobian_central(lambda: objective.evaluate().i_calc, inputs)
    jw = (w.cpu()[:, None] * jac).numpy()
    n_obs, n_par = jw.shape
    normal = jw.T @ jw
    chi2 = float((resid**2).sum())
    dof = n_obs - n_par
    if dof <= 0:
        raise RefinementError(f"{n_obs} observations for {n_par} parameters: no s.u. possible")
    d = np.sqrt(np.diag(normal))
    singular: list[str] = []
    zero = d <= 0
    d_safe = np.where(zero, 1.0, d)
    scaled = normal / np.outer(d_safe, d_safe)
    lam, vec = np.linalg.eigh(scaled)
    keep = lam > rcond * max(lam.max(), 0.0)
    for j in np.flatnonzero(~keep):
        comp = np.argsort(-np.abs(vec[:, j]))[:3]
        singular.append(" + ".join(f"{vec[c, j]:+.2f}·{names[c]}" for c in comp if abs(vec[c, j]) > 0.05))
    inv_scaled = (vec[:, keep] / lam[keep]) @ vec[:, keep].T
    covariance = inv_scaled / np.outer(d_safe, d_safe) * (chi2 / dof)
    covariance[zero, :] = 0.0
    covariance[:, zero] = 0.0
    su = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    values = torch.cat([p.detach().reshape(-1).cpu() for p in inputs]).numpy()
    out = Uncertainties(parameter_names=names, values=values, su=su, covariance=covariance, chi2=chi2,
                        n_obs=n_obs, n_params=n_par, goodness_of_fit=float(np.sqrt(chi2 / dof)),
                        singular_directions=singular)
    _propagate_to_sites(out, asu, model.crystal, selected)
    return out


def _block(cov: np.ndarray, names: list[str], group: str) -> np.ndarray | None:
    idx = [i for i, n in enumerate(names) if n.startswith(group + "[")]
    return cov[np.ix_(idx, idx)] if idx else None


def _propagate_to_sites(out: Uncertainties, asu, crystal, selected) -> None:
    n_sites = asu.n_sites
    c_pos = _block(out.covariance, out.parameter_names, "positions")
    if c_pos is not None:
        basis = asu.position_basis.detach().cpu().numpy()
        c_frac = basis @ c_pos @ basis.T
        out.site_frac_su = np.sqrt(np.clip(np.diag(c_frac), 0.0, None)).reshape(n_sites, 3)
    else:
        out.site_frac_su = np.full((n_sites, 3), np.nan)
    c_adp = _block(out.covariance, out.parameter_names, "adp")
    if c_adp is None:
        out.site_u_iso_su = np.full(n_sites, np.nan)
        out.site_u_cart_su = np.full((n_sites, 3, 3), np.nan)
        out.site_u_cif_su = [None] * n_sites
        return
    with torch.enable_grad():
        u = asu.site_u_cart().reshape(-1)
        ju = torch.stack([torch.autograd.grad(u[i], asu.adp, retain_graph=True)[0] for i in range(u.numel())])
    ju = ju.detach().cpu().numpy()
    c_u = ju @ c_adp @ ju.T  # [9 n_sites, 9 n_sites]
    out.site_u_cart_su = np.sqrt(np.clip(np.diag(c_u), 0.0, None)).reshape(n_sites, 3, 3)
    orth, frac = crystal.real_basis(), np.linalg.inv(crystal.real_basis())
    # U_cif and U_iso are linear in U_cart: build their 6x9 and 1x9 maps from unit matrices
    to_cif = np.stack([np.asarray(u_cart_to_cif(e.reshape(3, 3), orth, frac)) for e in np.eye(9)], axis=1)
    trace = np.eye(3).reshape(1, 9) / 3.0
    iso, cif = [], []
    for i in range(n_sites):
        block = c_u[9 * i:9 * i + 9, 9 * i:9 * i + 9]
        iso.append(float(np.sqrt(max((trace @ block @ trace.T)[0, 0], 0.0))))
        cif.append(np.sqrt(np.clip(np.diag(to_cif @ block @ to_cif.T), 0.0, None)) if asu.site_anisotropic[i] else None)
    out.site_u_iso_su = np.array(iso)
    out.site_u_cif_su = cif
