"""The refinable model: structure parameters, a thickness model and optional orientation corrections.

Parameter groups (each frozen or freed with ``requires_grad``):

* ``positions``: free Cartesian displacements (Å) of the ASU sites along their allowed directions;
* ``adp``: isotropic √U or anisotropic Cholesky factors (Å) of each site;
* ``thickness``: every parameter of the thickness model (θ in degrees → Å);
* ``orientation``: three small angles (α, β, ω, radians) per frame, applied as
  ``R_frame @ small_rotation(angles)`` (Methods 4.3's R = R_z(ω) R_y(β) R_x(α)).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from ..errors import EdwidgetsError
from ..experiment.forward import small_rotation
from .thickness import (
    ConstantThickness,
    GeometricThickness,
    PerFrameThickness,
    QuadraticThickness,
    ThicknessModel,
    ThicknessNN,
)

#: Names of the parameter groups, in optimizer order.
PARAMETER_GROUPS = ("positions", "adp", "thickness", "orientation")
#: Thickness used by the kinematical baseline (paper, Results 2.2: t fixed at 10 Å).
KINEMATIC_THICKNESS_A = 10.0
THICKNESS_MODELS = ("nn", "nn-quadratic", "constant", "per-frame", "geometric", "quadratic", "kinematic")


class RefinementError(EdwidgetsError):
    """A refinement was set up or driven wrongly (unknown group, bad learning rate, wrong state...)."""


def angle_range(frame_angle_deg: np.ndarray) -> tuple[float, float]:
    """(θ_lo, θ_hi) of the frames, widened to at least 1° so a normalisation is defined."""
    lo, hi = float(np.min(frame_angle_deg)), float(np.max(frame_angle_deg))
    if hi - lo < 1.0:
        mid = 0.5 * (lo + hi)
        lo, hi = mid - 0.5, mid + 0.5
    return lo, hi


def make_thickness_model(kind: str, frame_angle_deg, t_init: float | np.ndarray = 1000.0, *,
                         thickness_range: tuple[float, float] = (50.0, 3000.0), seed: int = 0,
                         fit_steps: int = 60, dtype: torch.dtype = torch.float64) -> ThicknessModel:
    """A thickness model of one of ``THICKNESS_MODELS`` started at ``t_init`` (Å, scalar or per frame).

    ``kinematic`` is a :class:`ConstantThickness` at 10 Å (freeze the ``thickness`` group).
    A per-frame ``t_init`` warm-starts the smooth models with ``fit_to``.
    """
    angles = np.asarray(frame_angle_deg, dtype=float)
    t = np.broadcast_to(np.asarray(t_init, dtype=float), angles.shape).copy()
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise RefinementError(f"initial thickness must be finite and > 0 Å, got {t_init}")
    mean = float(np.mean(t))
    theta_range = angle_range(angles)
    if kind == "kinematic":
        return ConstantThickness(KINEMATIC_THICKNESS_A, dtype=dtype)
    if kind == "constant":
        return ConstantThickness(mean, dtype=dtype)
    if kind == "per-frame":
        _, first = np.unique(angles, return_index=True)
        if len(first) != len(angles):  # repeated angles: index the frames by number instead
            raise RefinementError("per-frame thickness needs distinct frame angles")
        return PerFrameThickness(torch.as_tensor(t), torch.as_tensor(angles), dtype=dtype)
    if kind == "geometric":
        model = GeometricThickness(mean, 1.0, 0.0, dtype=dtype)
    elif kind == "quadratic":
        model = QuadraticThickness(0.0, 0.0, mean, theta_range=theta_range, dtype=dtype)
    elif kind in ("nn", "nn-quadratic"):
        lo, hi = thickness_range
        if not lo < mean < hi:
            raise RefinementError(f"initial thickness {mean:.1f} Å lies outside thickness_range {thickness_range}")
        model = ThicknessNN(theta_range, thickness_range, quadratic_prior=kind == "nn-quadratic",
                            t_init=mean, seed=seed, dtype=dtype)
    else:
        raise RefinementError(f"unknown thickness model {kind!r}; choose one of {', '.join(THICKNESS_MODELS)}")
    if np.ptp(t) > 0:
        model.fit_to(torch.as_tensor(angles), torch.as_tensor(t), steps=fit_steps)
    return model


class RefinementModel(nn.Module):
    """Everything a refinement changes, as one ``nn.Module``.

    Args:
        crystal: the start structure (its sites define the ASU).
        frame_angle_deg: goniometer angle of each frame (the thickness model's input).
        anisotropic: None keeps each site's ADP type, True refines anisotropic U (an isotropic
            start is allowed: isotropic sites start at U_iso·I), False isotropic.
        thickness_model: any :class:`ThicknessModel`; default ThicknessNN over the frames' range.
        t_init: start thickness (Å) of the default model.
        refine: {group: bool}; default positions, adp and thickness refined, orientation frozen.
    """

    def __init__(self, crystal, frame_angle_deg, *, anisotropic: bool | None = None,
                 thickness_model: ThicknessModel | None = None, t_init: float = 1000.0,
                 refine: dict[str, bool] | None = None, seed: int = 0, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.crystal = crystal
        angles = np.asarray(frame_angle_deg, dtype=float).reshape(-1)
        if angles.size == 0 or not np.all(np.isfinite(angles)):
            raise RefinementError("frame angles must be a non-empty list of finite numbers (degrees)")
        self.asu = crystal.parameters(anisotropic=anisotropic, dtype=dtype)
        self.thickness = thickness_model if thickness_model is not None else make_thickness_model(
            "nn", angles, t_init, seed=seed, dtype=dtype)
        self.orientation = nn.Parameter(torch.zeros(len(angles), 3, dtype=dtype))
        self.register_buffer("frame_angle_deg", torch.as_tensor(angles, dtype=dtype))
        self.set_refined(**{"positions": True, "adp": True, "thickness": True, "orientation": False, **(refine or {})})

    # --- groups ---------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.frame_angle_deg.numel())

    def group_parameters(self, group: str) -> list[nn.Parameter]:
        """The tensors of one parameter group (frozen or not)."""
        if group == "positions":
            return [self.asu.positions]
        if group == "adp":
            return [self.asu.adp]
        if group == "thickness":
            return list(self.thickness.parameters())
        if group == "orientation":
            return [self.orientation]
        raise RefinementError(f"unknown parameter group {group!r}; known: {', '.join(PARAMETER_GROUPS)}")

    def set_refined(self, **groups: bool) -> None:
        """Free (True) or freeze (False) parameter groups, e.g. ``set_refined(adp=False)``."""
        for group, free in groups.items():
            for p in self.group_parameters(group):
                p.requires_grad_(bool(free))

    def refined_groups(self) -> dict[str, bool]:
        """{group: True when refined}; a group without parameters counts as frozen."""
        out = {}
        for g in PARAMETER_GROUPS:
            ps = [p for p in self.group_parameters(g) if p.numel()]
            out[g] = bool(ps) and all(p.requires_grad for p in ps)
        return out

    def group_vectors(self) -> dict[str, torch.Tensor]:
        """Detached flat copies of each group's parameters (for shifts)."""
        out = {}
        for g in PARAMETER_GROUPS:
            ps = self.group_parameters(g)
            out[g] = torch.cat([p.detach().reshape(-1) for p in ps]).clone() if ps else torch.zeros(0)
        return out

    def optimizer_groups(self, lr: float, lrs: dict[str, float] | None = None) -> list[dict]:
        """Parameter groups for a torch optimizer; every group is included (frozen ones get no
        gradient, so freeing them later needs no new optimizer)."""
        lrs = dict(lrs or {})
        unknown = set(lrs) - set(PARAMETER_GROUPS)
        if unknown:
            raise RefinementError(f"learning rates given for unknown group(s) {sorted(unknown)}")
        groups = []
        for g in PARAMETER_GROUPS:
            rate = float(lrs.get(g, lr))
            if not rate > 0:
                raise RefinementError(f"learning rate of {g} must be > 0, got {rate}")
            groups.append({"params": self.group_parameters(g), "lr": rate, "name": g})
        return groups

    # --- evaluation -----------------------------------------------------------------------
    def frame_thickness(self) -> torch.Tensor:
        """Thickness (Å) of every frame from the thickness model, [n_frames]."""
        return self.thickness(self.frame_angle_deg)

    def rotations(self) -> torch.Tensor | None:
        """Per-frame orientation corrections [n_frames, 3, 3], or None when unused."""
        if not self.orientation.requires_grad and not bool(torch.any(self.orientation != 0)):
            return None
        return small_rotation(self.orientation)

    def atoms(self):
        """The full unit cell at the current parameters (differentiable)."""
        return self.crystal.expand(self.asu)

    def refined_crystal(self):
        """A :class:`Crystal` holding the current parameter values."""
        return self.crystal.with_parameters(self.asu)

    def n_refined(self, groups: Iterable[str] | None = None) -> int:
        groups = PARAMETER_GROUPS if groups is None else groups
        return sum(p.numel() for g in groups for p in self.group_parameters(g) if p.requires_grad)
