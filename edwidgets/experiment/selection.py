"""Reflection selection for continuous-rotation 3D-ED frames (Klar et al. 2023; physics-notes §7).

A frame covers the angular range [centre − half_width, centre + half_width] about the rotation
axis.  During that sweep the excitation error of reflection g changes by about ±ΔS_g around its
value at the frame centre, with

    ΔS_g = |g × â| · half_width        (â the unit rotation axis; |g × â| = the lever arm,
                                        the distance of g from the axis; half_width in rad)

so R_Sg = |S_g(centre)| / ΔS_g < 1 means the reflection passes through its Bragg condition inside
the frame.  A reflection is kept when

    R_Sg < R_Sg^max   and   ΔS_g − |S_g(centre)| > D_Sg,

the second condition asking that its rocking curve be swept by more than D_Sg past the Bragg
position, so that the integrated intensity is not a partial one.

Units: S_g, ΔS_g and D_Sg in Å⁻¹ (same units as g); angles in radians.
"""
from __future__ import annotations

import torch

from edwidgets.errors import ExperimentError

#: Published default of R_Sg^max (Klar et al. 2023).
RSG_MAX_DEFAULT = 0.66
#: R_Sg^max used for quartz in the published refinements.
RSG_MAX_QUARTZ = 0.9
#: Published default of D_Sg, in Å⁻¹.
DSG_DEFAULT = 0.0015


def delta_s_g(
    g_lab: torch.Tensor, rotation_axis_lab: torch.Tensor, half_width_rad: float | torch.Tensor
) -> torch.Tensor:
    """ΔS_g = |g × â| · half_width: the change of excitation error over half a frame.

    Args:
        g_lab: reciprocal vectors in the laboratory frame, shape [..., 3], Å⁻¹.
        rotation_axis_lab: rotation axis in the laboratory frame, shape [3] (normalised here).
        half_width_rad: half the frame's angular range in radians; a number or a tensor that
            broadcasts against g_lab[..., 0] (e.g. one value per frame).

    Returns:
        ΔS_g, shape g_lab.shape[:-1], Å⁻¹ (differentiable).
    """
    g_lab = torch.as_tensor(g_lab)
    axis = torch.as_tensor(rotation_axis_lab, dtype=g_lab.dtype, device=g_lab.device)
    if g_lab.shape[-1:] != (3,) or axis.shape != (3,):
        raise ExperimentError(
            f"g_lab must have shape [..., 3] and the rotation axis [3], got {tuple(g_lab.shape)} and {tuple(axis.shape)}"
        )
    norm = torch.linalg.vector_norm(axis)
    if not torch.isfinite(norm) or norm <= 0:
        raise ExperimentError(f"rotation axis must be a finite non-zero vector, got {axis.tolist()}")
    half = torch.as_tensor(half_width_rad, dtype=g_lab.dtype, device=g_lab.device)
    if not torch.isfinite(half).all() or (half < 0).any():
        raise ExperimentError("frame half-width must be finite and ≥ 0 (radians)")
    axis = axis / norm
    lever_arm = torch.linalg.vector_norm(torch.linalg.cross(g_lab, axis.expand_as(g_lab), dim=-1), dim=-1)
    return lever_arm * half


def rsg(s_g_centre: torch.Tensor, delta_s_g: torch.Tensor) -> torch.Tensor:
    """R_Sg = |S_g(frame centre)| / ΔS_g (inf where ΔS_g = 0)."""
    s = torch.as_tensor(s_g_centre)
    d = torch.as_tensor(delta_s_g, dtype=s.dtype, device=s.device)
    return torch.abs(s) / d


def select_reflections(
    s_g_centre: torch.Tensor,
    delta_s_g: torch.Tensor,
    rsg_max: float = RSG_MAX_DEFAULT,
    dsg: float = DSG_DEFAULT,
) -> torch.Tensor:
    """Bool mask of the reflections to keep: R_Sg < rsg_max and ΔS_g − |S_g| > dsg.

    Args:
        s_g_centre: excitation errors at the frame centre, Å⁻¹ (any shape).
        delta_s_g: ΔS_g from :func:`delta_s_g`, same shape (or broadcastable), Å⁻¹.
        rsg_max: R_Sg^max (published default 0.66; 0.9 was used for quartz).
        dsg: D_Sg in Å⁻¹ (published default 0.0015).

    Raises:
        ExperimentError: NaN/inf inputs, negative ΔS_g, or non-positive rsg_max / negative dsg.
    """
    s = torch.as_tensor(s_g_centre)
    if not s.is_floating_point():
        s = s.to(torch.get_default_dtype())
    d = torch.as_tensor(delta_s_g, dtype=s.dtype, device=s.device)
    if not (rsg_max > 0) or not (dsg >= 0):
        raise ExperimentError(f"need rsg_max > 0 and dsg ≥ 0, got rsg_max={rsg_max}, dsg={dsg}")
    if not torch.isfinite(s).all() or not torch.isfinite(d).all():
        raise ExperimentError("excitation errors S_g and ΔS_g must be finite")
    if (d < 0).any():
        raise ExperimentError("ΔS_g must be ≥ 0")
    abs_s = torch.abs(s)
    # R_Sg < rsg_max written as |S_g| < rsg_max·ΔS_g: no division, and ΔS_g = 0 is simply rejected.
    return (abs_s < rsg_max * d) & (d - abs_s > dsg)
