"""Differentiable forward model of a 3D-ED experiment: structure → integrated frame intensities.

Per frame: one beam set (the union over the frame's orientation samples, physics-notes §5),
the structure matrices of all samples decomposed in one batch, intensities averaged over the
samples (continuous rotation or precession), then gathered for the frame's reflections. All
coupling structure factors of the whole dataset are evaluated in one call per forward pass and
gathered through cached index tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ExperimentError
from ..physics.beams import BeamSet, excitation_errors, reciprocal_points_within
from ..physics.bloch import coupling_potentials, decompose, propagate, structure_matrix, thickness_to_tau
from ..physics.constants import potential_prefactor
from ..simulation import ScatteringModel
from .frames import Experiment
from .parallel import map_frames, resolve_workers
from .residuals import Observations, ResidualReport, apply_frame_scales, frame_scales, prepare_observations, residual_report
from .selection import delta_s_g, select_reflections


@dataclass
class FramePlan:
    """Everything fixed about one frame during a refinement."""

    frame: int
    beams: BeamSet
    coupling_index: torch.Tensor  # [N, N] into the global coupling list
    sample_orientations: torch.Tensor  # [S, 3, 3]
    rows: torch.Tensor  # positions (in the model's reflection order) of this frame's reflections
    beam_of_row: torch.Tensor  # beam index of each of those reflections


def small_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Differentiable R = R_z(ω) R_y(β) R_x(α) for angles [..., 3] = (α, β, ω) in radians."""
    a, b, w = angles.unbind(-1)
    one, zero = torch.ones_like(a), torch.zeros_like(a)

    def mat(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    rx = mat([[one, zero, zero], [zero, a.cos(), -a.sin()], [zero, a.sin(), a.cos()]])
    ry = mat([[b.cos(), zero, b.sin()], [zero, one, zero], [-b.sin(), zero, b.cos()]])
    rz = mat([[w.cos(), -w.sin(), zero], [w.sin(), w.cos(), zero], [zero, zero, one]])
    return rz @ ry @ rx


class ForwardModel:
    """Integrated intensities of every selected reflection of an experiment for a structure.

    g_max: beams included in the Bloch calculation (Å⁻¹); resolution: reflections scored
    (|g| ≤ resolution, default g_max); sg_max: excitation-error limit for beams at any sample;
    n_samples: orientation samples per frame ("auto" uses physics-notes §7 with
    ``thickness_hint``); selection: (R_Sg^max, D_Sg) of Klar et al., or None to score every
    reflection of the file. ``rows`` (indices into ``experiment.reflections``) fixes the scored
    reflections instead, e.g. to keep the selection made at the file's orientations after the
    orientations were corrected (same N for every model and stage). ``workers``: threads over
    frames (``"auto"``: the available cores on the CPU, 1 on a GPU); run them with one torch
    intra-op thread each. ``method``: the propagation (:func:`~edwidgets.physics.bloch.propagate`);
    ``"auto"`` takes the eigendecomposition on the CPU and the matrix exponential on a GPU, where
    batched ``eigh`` is slow (benchmarks/RESULTS.md, H100: 2–4× per epoch at 300–550 beams).
    """

    def __init__(
        self,
        experiment: Experiment,
        crystal,
        *,
        g_max: float = 2.0,
        resolution: float | None = None,
        sg_max: float = 0.01,
        n_samples: int | str = "auto",
        thickness_hint: float = 1000.0,
        selection: tuple[float, float] | None = (0.66, 0.0015),
        absorption: float = 0.0,
        method: str = "auto",
        dtype: torch.dtype = torch.float64,
        device=None,
        progress=None,
        rows: np.ndarray | None = None,
        workers: int | str = "auto",
    ):
        experiment.check_cell(crystal.cell, getattr(crystal, "name", "") or "structure")
        self.experiment = experiment
        self.crystal = crystal
        self.dtype, self.device = dtype, device
        self.g_max, self.sg_max = float(g_max), float(sg_max)
        self.resolution = float(resolution if resolution is not None else g_max)
        self.absorption = float(absorption)
        if method == "auto":
            method = "matrix_exp" if torch.device(device or "cpu").type == "cuda" else "eigen"
        # absorption makes Ā non-Hermitian: the general eigendecomposition replaces the Hermitian one
        self.method = "eig" if absorption and method == "eigen" else method
        self.model = ScatteringModel(crystal, dtype=dtype, device=device, cell=experiment.cell)
        self.k = 1.0 / experiment.wavelength
        self.prefactor = potential_prefactor(experiment.voltage_kv, self.model.volume)
        if n_samples == "auto":
            n_samples = experiment.auto_samples(thickness_hint, self.resolution)
        self.n_samples = int(n_samples)
        self.selection = selection
        self.workers = resolve_workers(workers, device)
        self._fixed_rows = None if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        self._build(progress)

    # --- set-up -------------------------------------------------------------
    def _build(self, progress) -> None:
        exp = self.experiment
        recip = self.model.reciprocal_basis.cpu().numpy()
        refl = exp.reflections
        hkl_obs = refl[["h", "k", "l"]].to_numpy(np.int64)
        frames = refl["frame"].to_numpy()
        g_len = np.linalg.norm(hkl_obs @ recip.T, axis=1)
        keep = g_len <= self.resolution
        if self.selection is not None and exp.geometry == "continuous":
            g_lab = np.einsum("nij,jk,nk->ni", exp.orientations[frames], recip, hkl_obs)
            s_centre = excitation_errors(torch.as_tensor(g_lab), self.k)
            dsg = delta_s_g(torch.as_tensor(g_lab), torch.as_tensor(exp.rotation_axis), torch.as_tensor(np.radians(exp.half_width_deg[frames])))
            keep &= select_reflections(s_centre, dsg, self.selection[0], self.selection[1]).numpy()
        if self._fixed_rows is not None:
            if self._fixed_rows.size and (self._fixed_rows[0] < 0 or self._fixed_rows[-1] >= len(refl)):
                raise ExperimentError(f"{exp.source or exp.name}: rows must lie in 0..{len(refl) - 1}")
            keep = np.zeros(len(refl), dtype=bool)
            keep[self._fixed_rows] = True
        self.rows_in_data = np.flatnonzero(keep)  # rows of experiment.reflections that are scored
        if len(self.rows_in_data) == 0:
            raise ExperimentError(f"{exp.source or exp.name}: no reflection passes the resolution/selection limits")
        candidates = reciprocal_points_within(recip, self.g_max)
        kept_frames = frames[self.rows_in_data]
        plans, coupling_keys = [], {}
        iterator = range(exp.n_frames)
        if progress is not None:
            iterator = progress(iterator, desc="frame beam sets", leave=False)
        for f in iterator:
            rows = np.flatnonzero(kept_frames == f)
            samples = exp.sample_orientations(f, self.n_samples)
            g_lab = np.einsum("sij,jk,mk->smi", samples, recip, candidates)
            s = excitation_errors(torch.as_tensor(g_lab), self.k).numpy()
            mask = (np.abs(s) <= self.sg_max).any(0)
            mask[0] = True
            hkl_f = candidates[mask]
            obs_hkl = hkl_obs[self.rows_in_data[rows]]
            known = {tuple(h): i for i, h in enumerate(hkl_f)}
            extra = [h for h in map(tuple, obs_hkl) if h not in known]
            if extra:
                hkl_f = np.concatenate([hkl_f, np.unique(np.array(extra), axis=0)])
                known = {tuple(h): i for i, h in enumerate(hkl_f)}
            beams = BeamSet.from_hkl(hkl_f)
            global_index = np.array([coupling_keys.setdefault(tuple(d), len(coupling_keys)) for d in beams.coupling_hkl])
            plans.append(
                FramePlan(
                    frame=f,
                    beams=beams,
                    coupling_index=torch.as_tensor(global_index[beams.coupling_index.numpy()], device=self.device),
                    sample_orientations=torch.as_tensor(samples, dtype=self.dtype, device=self.device),
                    rows=torch.as_tensor(rows, device=self.device),
                    beam_of_row=torch.as_tensor([known[tuple(h)] for h in obs_hkl], dtype=torch.long, device=self.device),
                )
            )
        self.plans = plans
        self.coupling_hkl = np.array(list(coupling_keys), dtype=np.int64).reshape(-1, 3)
        self.zero_coupling = coupling_keys[(0, 0, 0)]
        data = exp.reflections.iloc[self.rows_in_data]
        self.hkl = data[["h", "k", "l"]].to_numpy(np.int64)
        self.frame_index = torch.as_tensor(data["frame"].to_numpy(copy=True), device=self.device)
        self.observations: Observations = prepare_observations(
            torch.as_tensor(data["I"].to_numpy(copy=True), dtype=self.dtype, device=self.device),
            torch.as_tensor(data["sigma"].to_numpy(copy=True), dtype=self.dtype, device=self.device),
            frame_index=self.frame_index,
            n_frames=exp.n_frames,
        )

    # --- evaluation ---------------------------------------------------------
    @property
    def n_reflections(self) -> int:
        return len(self.rows_in_data)

    def beam_counts(self) -> np.ndarray:
        return np.array([p.beams.n_beams for p in self.plans])

    def couplings(self, atoms=None) -> torch.Tensor:
        """U_d of every beam difference of the dataset (one structure-factor evaluation)."""
        f = self.model.structure_factors(self.coupling_hkl, atoms)
        return coupling_potentials(f, self.prefactor, self.zero_coupling, self.absorption)

    def frame_structure_matrices(self, plan: FramePlan, couplings: torch.Tensor,
                                 rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Structure matrices [S, N, N] of one frame's orientation samples and K_n [S] (normal along the beam).

        rotation: optional extra crystal rotation [3, 3] applied before the frame orientation.
        """
        orientations = plan.sample_orientations
        if rotation is not None:
            orientations = orientations @ rotation
        hkl = torch.as_tensor(plan.beams.hkl, dtype=self.dtype, device=self.device)
        g_lab = torch.einsum("sij,jk,mk->smi", orientations, self.model.reciprocal_basis, hkl)
        s = excitation_errors(g_lab, self.k)
        k_normal = torch.full((len(orientations),), self.k, dtype=self.dtype, device=self.device)
        return structure_matrix(couplings, plan.coupling_index, s, g_lab[..., 2], k_normal, self.k), k_normal

    def frame_intensities(self, plan: FramePlan, couplings: torch.Tensor, thickness: torch.Tensor,
                          rotation: torch.Tensor | None = None) -> torch.Tensor:
        """Sample-averaged intensities [T, n_rows] of one frame's reflections.

        thickness [T] (Å, along the beam); rotation: optional extra crystal rotation [3, 3] applied
        before the frame orientation (orientation refinement).
        """
        a, k_normal = self.frame_structure_matrices(plan, couplings, rotation)
        phi = propagate(a, thickness_to_tau(thickness.reshape(-1), k_normal), self.method)
        intensity = (phi.real**2 + phi.imag**2).mean(0)  # average over samples → [T, N]
        return intensity[:, plan.beam_of_row]

    def frame_eigen(self, plan: FramePlan, couplings: torch.Tensor, rotation: torch.Tensor | None = None):
        """Eigendecomposition of one frame's structure matrices, without gradients (preparation).

        Returns (eigenvalues [S, N], eigenvectors V [S, N, N], V⁻¹ e_000 [S, N], K_n [S]); with
        :meth:`intensities_from_eigen` it gives the frame's intensities at any number of thicknesses
        for the price of one decomposition. Hermitian (eigh, V⁻¹ = Vᴴ) without absorption, general
        (eig) with it.
        """
        with torch.no_grad():
            a, k_normal = self.frame_structure_matrices(plan, couplings, rotation)
            lam, vec, first = decompose(a, hermitian=not self.absorption)
        return lam, vec, first, k_normal

    def intensities_from_eigen(self, plan: FramePlan, eigen, thickness: torch.Tensor) -> torch.Tensor:
        """Sample-averaged intensities [T, n_rows] of the frame's reflections from :meth:`frame_eigen`.

        Only the rows of the scored reflections are formed (S·T·rows·N work instead of S·T·N²),
        which is what makes fine thickness grids cheap.
        """
        lam, vec, first, k_normal = eigen
        with torch.no_grad():
            tau = thickness_to_tau(torch.as_tensor(thickness, dtype=self.dtype, device=self.device).reshape(-1), k_normal)
            phase = tau[:, :, None] * lam[:, None, :]  # [S, T, N], complex with absorption
            coeff = torch.exp(1j * phase) if phase.is_complex() else torch.polar(torch.ones_like(phase), phase)
            coeff = coeff * first[:, None, :]
            rows = vec[:, plan.beam_of_row, :]  # [S, R, N]
            phi = torch.einsum("srn,stn->str", rows, coeff)
            return (phi.real**2 + phi.imag**2).mean(0)

    def report(self, thickness, rotations=None, atoms=None) -> ResidualReport:
        """R_obs, wR_all, N_obs, N_all, wR(F) at ``thickness`` (per frame or one value, Å) with the
        closed-form per-frame scales; ``rotations`` [n_frames, 3, 3] orientation corrections."""
        with torch.no_grad():
            rot = None if rotations is None else torch.as_tensor(rotations, dtype=self.dtype, device=self.device)
            i_calc = self.intensities(torch.as_tensor(thickness, dtype=self.dtype), atoms=atoms, rotations=rot)
        k = frame_scales(i_calc, self.observations)
        return residual_report(apply_frame_scales(i_calc, k, self.frame_index), self.observations)

    def intensities(self, thickness: torch.Tensor, atoms=None, rotations: torch.Tensor | None = None,
                    frames=None) -> torch.Tensor:
        """Unscaled I_calc [n_reflections] (model order) for thickness [n_frames] (Å).

        ``rotations`` [n_frames, 3, 3] applies per-frame orientation corrections; ``frames``
        restricts the evaluation to some frames (the other entries stay 0). Frames run on
        ``self.workers`` threads (:mod:`.parallel`); the result does not depend on their number.
        """
        thickness = torch.as_tensor(thickness, dtype=self.dtype, device=self.device)
        if thickness.ndim == 0:
            thickness = thickness.expand(self.experiment.n_frames)
        if not torch.all(torch.isfinite(thickness)):
            raise ExperimentError("thickness is not finite (NaN or inf)")
        couplings = self.couplings(atoms)
        plans = self.plans if frames is None else [self.plans[f] for f in frames]
        plans = [plan for plan in plans if len(plan.rows)]
        inputs = (couplings, thickness, rotations)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
            return _FramesFunction.apply(self, plans, *inputs)
        parts = map_frames(lambda plan: self._frame_row_intensities(plan, *inputs, grad=False), plans, self.workers)
        return self._scatter_rows(plans, parts)

    def _frame_row_intensities(self, plan: FramePlan, couplings, thickness, rotations, grad: bool) -> torch.Tensor:
        """I_calc of one frame's scored reflections; grad mode set here because it is per thread."""
        with torch.set_grad_enabled(grad):
            rot = None if rotations is None else rotations[plan.frame]
            return self.frame_intensities(plan, couplings, thickness[plan.frame : plan.frame + 1], rot)[0]

    def _scatter_rows(self, plans: list[FramePlan], parts: list[torch.Tensor]) -> torch.Tensor:
        out = torch.zeros(self.n_reflections, dtype=self.dtype, device=self.device)
        if parts:
            out = out.index_put((torch.cat([p.rows for p in plans]),), torch.cat(parts))
        return out


class _FramesFunction(torch.autograd.Function):
    """All frames' intensities as one autograd node, so that frames run in parallel both ways.

    Forward: each frame builds its own graph from detached copies of the shared inputs (couplings,
    thickness, rotations) on a worker thread. Backward: each frame's graph is differentiated on a
    worker thread, and the gradients of the shared inputs are summed in frame order, so the result
    is the same for any number of workers.
    """

    @staticmethod
    def forward(ctx, forward_model: ForwardModel, plans, couplings, thickness, rotations):
        needs = ctx.needs_input_grad[2:]

        def run(plan):
            leaves = tuple(None if x is None else x.detach().requires_grad_(bool(need))
                           for x, need in zip((couplings, thickness, rotations), needs))
            return forward_model._frame_row_intensities(plan, *leaves, grad=True), leaves

        results = map_frames(run, plans, forward_model.workers)
        ctx.forward_model, ctx.plans, ctx.results = forward_model, plans, results
        # shape, dtype and device of the inputs, for their gradients (the tensors need not be kept)
        ctx.inputs = tuple(None if x is None else (x.shape, x.dtype, x.device) for x in (couplings, thickness, rotations))
        return forward_model._scatter_rows(plans, [r[0].detach() for r in results])

    @staticmethod
    def backward(ctx, grad_out):
        needs = ctx.needs_input_grad[2:]

        def run(item):
            plan, (out, leaves) = item
            grad = grad_out[plan.rows]
            if not bool(grad.any()):  # e.g. one Jacobian row: only its own frame contributes
                return None
            wanted = [x for x, need in zip(leaves, needs) if need]
            # the frames' graphs live as long as this node (freed with it), so a retained outer
            # graph can be differentiated again (Jacobian rows for the standard uncertainties)
            return torch.autograd.grad(out, wanted, grad, retain_graph=True, allow_unused=True)

        per_frame = [g for g in map_frames(run, list(zip(ctx.plans, ctx.results)), ctx.forward_model.workers)
                     if g is not None]
        grads = [None, None, None]
        for slot, i in enumerate(i for i, need in enumerate(needs) if need):
            shape, dtype, device = ctx.inputs[i]
            total = torch.zeros(shape, dtype=dtype, device=device)
            for g in per_frame:  # frame order: deterministic for any number of workers
                if g[slot] is not None:
                    total = total + g[slot]
            grads[i] = total
        return (None, None, *grads)
