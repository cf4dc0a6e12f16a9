"""Crystallographic residuals for integrated 3D-ED intensities (paper, Methods 4.2, after Klar et al. 2023).

Pure tensor functions, differentiable in the calculated intensities ``i_calc``.

The observations are prepared once (:func:`prepare_observations`), which applies the paper's rules:

* σ(√I) = σ(I) / (2 √I);
* weak or negative reflections, I_o < 0.01 σ(I_o): I_o := 0 and σ(√I_o) := 5 √σ(I_o);
* weights w = (σ(√I_o)² + (u √I_o)²)^(−1/2), instability factor u = 0.01;
* "observed" reflections: I_o > 3 σ(I_o) (σ(I_o) as given, tested on the intensity after the weak rule).

Then, with sums over all reflections for wR_all and over observed ones for R_obs::

    R  = Σ |√I_o − √I_c| / Σ √I_o                       (eq. 1)
    wR = sqrt( Σ (w |I_o − I_c|)² / Σ (w I_o)² )         (eq. 2)

Note that these w are F-space weights applied to I-space differences (as published).  The
conventional F-based residual ``wr_f`` (w_F = 1/σ(F)², on |F| = √I) is offered for comparison, and
``wr2``, the conventional intensity residual with w = 1/σ(I) (SHELXL's weights with a = b = 0), as
an alternative refinement loss.

Every residual takes ``per_frame=True`` to return one value per frame (the group index is given
once to :func:`prepare_observations`).  A frame whose denominator is zero (no reflections, or all
of them zero) gets the value 0 and count 0, never NaN, so that per-frame losses can be averaged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from edwidgets.errors import ExperimentError

#: instability factor u of the weighting scheme (paper, Methods 4.2)
DEFAULT_INSTABILITY_U = 0.01
#: I_o < WEAK_FRACTION · σ(I_o) counts as weak or negative
WEAK_FRACTION = 0.01
#: σ(√I_o) := WEAK_SIGMA_FACTOR · √σ(I_o) for weak reflections
WEAK_SIGMA_FACTOR = 5.0
#: observed reflections: I_o > OBSERVED_SIGMA_RATIO · σ(I_o)
OBSERVED_SIGMA_RATIO = 3.0


def _describe_indices(mask: torch.Tensor, limit: int = 10) -> str:
    idx = torch.nonzero(mask.reshape(-1)).reshape(-1).tolist()
    shown = ", ".join(str(i) for i in idx[:limit])
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"{len(idx)} reflection(s), index {shown}{more}"


@dataclass(frozen=True)
class Observations:
    """Observed intensities with the paper's rules applied once; built by :func:`prepare_observations`.

    Attributes (all 1-D, length n_all):
        i_obs: I_o after the weak rule (weak/negative ones set to 0).
        sigma_i: σ(I_o) as given.
        sigma_sqrt: σ(√I_o) (5 √σ(I_o) for weak reflections).
        weight: w = (σ(√I_o)² + (u √I_o)²)^(−1/2), used by wR_all and the frame scales.
        observed: bool mask I_o > 3 σ(I_o), used by R_obs.
        weak: bool mask of the reflections the weak rule changed.
        frame_index: optional long tensor, the frame (group) of each reflection, in [0, n_frames).
        n_frames: number of frames (0 when no frame index was given).
        u: the instability factor used.
        i_measured: I_o as given (negative ones kept), for the σ-weighted :func:`wr2`.
    """

    i_obs: torch.Tensor
    sigma_i: torch.Tensor
    sigma_sqrt: torch.Tensor
    weight: torch.Tensor
    observed: torch.Tensor
    weak: torch.Tensor
    frame_index: torch.Tensor | None
    n_frames: int
    u: float
    i_measured: torch.Tensor

    @property
    def n_all(self) -> int:
        """Number of reflections entering wR_all."""
        return int(self.i_obs.numel())

    @property
    def n_obs(self) -> int:
        """Number of observed reflections (I_o > 3σ) entering R_obs."""
        return int(self.observed.sum().item())

    @property
    def sqrt_i_obs(self) -> torch.Tensor:
        """√I_o (I_o ≥ 0 after the weak rule)."""
        return torch.sqrt(self.i_obs)

    def subset(self, mask: torch.Tensor) -> "Observations":
        """The observations selected by a bool mask (frame numbering is kept)."""
        mask = torch.as_tensor(mask, dtype=torch.bool, device=self.i_obs.device)
        if mask.shape != self.i_obs.shape:
            raise ExperimentError(f"subset mask has shape {tuple(mask.shape)}, expected {tuple(self.i_obs.shape)}")
        return Observations(
            i_obs=self.i_obs[mask],
            sigma_i=self.sigma_i[mask],
            sigma_sqrt=self.sigma_sqrt[mask],
            weight=self.weight[mask],
            observed=self.observed[mask],
            weak=self.weak[mask],
            frame_index=None if self.frame_index is None else self.frame_index[mask],
            n_frames=self.n_frames,
            u=self.u,
            i_measured=self.i_measured[mask],
        )

    @property
    def sigma_weight(self) -> torch.Tensor:
        """1/σ(I_o), the weights of :func:`wr2`; every σ(I_o) must be positive for them."""
        zero = self.sigma_i <= 0
        if zero.any():
            raise ExperimentError(f"sigma(I_obs) is zero for {_describe_indices(zero)}: the σ-weighted wR2 needs σ > 0 "
                                 "(refine with the paper's weights instead, e.g. edwidgets refine --loss frame-mean)")
        return 1.0 / self.sigma_i

    def weighted(self, weighting: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, I_o) of a weighting scheme: "paper" (eq. 3's w and I_o after the weak rule, wR_all) or
        "sigma" (1/σ(I_o) and I_o as measured, :func:`wr2`)."""
        if weighting == "paper":
            return self.weight, self.i_obs
        if weighting == "sigma":
            return self.sigma_weight, self.i_measured
        raise ExperimentError(f"unknown weighting {weighting!r}; choose 'paper' or 'sigma'")


def prepare_observations(
    i_obs: torch.Tensor,
    sigma: torch.Tensor,
    *,
    u: float = DEFAULT_INSTABILITY_U,
    frame_index: torch.Tensor | None = None,
    n_frames: int | None = None,
) -> Observations:
    """Apply the weak-reflection rule, compute σ(√I), weights and the observed mask.

    Args:
        i_obs: observed integrated intensities I_o, shape [n].
        sigma: their standard uncertainties σ(I_o), shape [n], finite and ≥ 0.  σ = 0 is allowed
            only for I_o > 0 (its weight is then 1/(u √I_o)).
        u: instability factor of the weights (paper: 0.01).
        frame_index: optional frame (group) of each reflection, integers in [0, n_frames).
        n_frames: number of frames; default max(frame_index) + 1.

    Raises:
        ExperimentError: NaN/inf intensities or σ, negative σ, mismatched shapes, a frame index
            out of range, or a reflection whose weight would be infinite (σ = 0 with I_o ≤ 0).
    """
    i_obs = torch.as_tensor(i_obs)
    sigma = torch.as_tensor(sigma)
    if not i_obs.is_floating_point():
        i_obs = i_obs.to(torch.get_default_dtype())
    sigma = sigma.to(dtype=i_obs.dtype, device=i_obs.device)
    if i_obs.dim() != 1 or sigma.shape != i_obs.shape:
        raise ExperimentError(
            f"observed intensities and sigmas must be 1-D of equal length, got shapes {tuple(i_obs.shape)} and {tuple(sigma.shape)}"
        )
    if not (u >= 0.0 and u == u and u != float("inf")):
        raise ExperimentError(f"instability factor u must be finite and ≥ 0, got {u}")
    bad = ~torch.isfinite(i_obs)
    if bad.any():
        raise ExperimentError(f"observed intensity is NaN or infinite for {_describe_indices(bad)}")
    bad = ~torch.isfinite(sigma)
    if bad.any():
        raise ExperimentError(f"sigma(I_obs) is NaN or infinite for {_describe_indices(bad)}")
    bad = sigma < 0
    if bad.any():
        raise ExperimentError(f"sigma(I_obs) is negative for {_describe_indices(bad)}")
    i_obs = i_obs.detach()
    sigma = sigma.detach()

    weak = i_obs < WEAK_FRACTION * sigma
    i_prepared = torch.where(weak, torch.zeros_like(i_obs), i_obs)
    bad = (i_prepared <= 0) & (sigma == 0)
    if u == 0.0:
        bad = bad | (sigma == 0)
    if bad.any():
        raise ExperimentError(
            f"sigma(I_obs) is zero where the weight would be infinite (I_obs ≤ 0 or u = 0) for {_describe_indices(bad)}"
        )
    # σ(√I) = σ/(2√I) for normal reflections, 5√σ for weak ones; the where() keeps 0/0 out.
    safe_i = torch.where(i_prepared > 0, i_prepared, torch.ones_like(i_prepared))
    sigma_sqrt = torch.where(weak, WEAK_SIGMA_FACTOR * torch.sqrt(sigma), sigma / (2.0 * torch.sqrt(safe_i)))
    weight = (sigma_sqrt**2 + (u**2) * i_prepared) ** -0.5
    bad = ~torch.isfinite(weight)
    if bad.any():  # only overflow can reach here; kept as a guard
        raise ExperimentError(f"weight is not finite for {_describe_indices(bad)}")
    observed = i_prepared > OBSERVED_SIGMA_RATIO * sigma

    if frame_index is not None:
        frame_index = torch.as_tensor(frame_index, device=i_obs.device)
        if frame_index.shape != i_obs.shape:
            raise ExperimentError(f"frame_index has shape {tuple(frame_index.shape)}, expected {tuple(i_obs.shape)}")
        if frame_index.is_floating_point():
            if not torch.equal(frame_index, frame_index.round()):
                raise ExperimentError("frame_index must hold integers")
        frame_index = frame_index.long()
        if frame_index.numel() and int(frame_index.min()) < 0:
            raise ExperimentError(f"frame_index is negative for {_describe_indices(frame_index < 0)}")
        needed = int(frame_index.max()) + 1 if frame_index.numel() else 0
        if n_frames is None:
            n_frames = needed
        elif needed > n_frames:
            raise ExperimentError(f"frame_index reaches {needed - 1} but n_frames is {n_frames}")
    else:
        n_frames = 0 if n_frames is None else int(n_frames)
    return Observations(
        i_obs=i_prepared,
        sigma_i=sigma,
        sigma_sqrt=sigma_sqrt,
        weight=weight,
        observed=observed,
        weak=weak,
        frame_index=frame_index,
        n_frames=int(n_frames),
        u=float(u),
        i_measured=i_obs,
    )


class Residual(NamedTuple):
    """A residual value (fraction, not percent) and the number of reflections it ran over.

    ``value`` is a 0-d tensor, or [n_frames] with ``per_frame=True``; ``n`` is an int, or a long
    tensor [n_frames].
    """

    value: torch.Tensor
    n: int | torch.Tensor


def _check_calc(i_calc: torch.Tensor, obs: Observations) -> torch.Tensor:
    if not isinstance(i_calc, torch.Tensor):
        i_calc = torch.as_tensor(i_calc, dtype=obs.i_obs.dtype)
    if i_calc.shape != obs.i_obs.shape:
        raise ExperimentError(
            f"calculated intensities have shape {tuple(i_calc.shape)}, observations {tuple(obs.i_obs.shape)}"
        )
    return i_calc


def _frame_index(obs: Observations, frame_index: torch.Tensor | None, n_frames: int | None) -> tuple[torch.Tensor, int]:
    if frame_index is None:
        if obs.frame_index is None:
            raise ExperimentError("per-frame values need a frame index: give frame_index to prepare_observations")
        return obs.frame_index, obs.n_frames
    frame_index = torch.as_tensor(frame_index, device=obs.i_obs.device).long()
    if frame_index.shape != obs.i_obs.shape:
        raise ExperimentError(f"frame_index has shape {tuple(frame_index.shape)}, expected {tuple(obs.i_obs.shape)}")
    if n_frames is None:
        n_frames = int(frame_index.max()) + 1 if frame_index.numel() else 0
    if frame_index.numel() and (int(frame_index.min()) < 0 or int(frame_index.max()) >= n_frames):
        raise ExperimentError(f"frame_index must lie in [0, {n_frames})")
    return frame_index, int(n_frames)


def _group_sum(values: torch.Tensor, index: torch.Tensor, n_groups: int) -> torch.Tensor:
    out = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den, 0 where den == 0, with finite gradients everywhere."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """√max(x, 0) with gradient 0 (not inf/NaN) at and below 0."""
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


def _reduce(
    terms_num: torch.Tensor,
    terms_den: torch.Tensor,
    include: torch.Tensor | None,
    obs: Observations,
    per_frame: bool,
    take_sqrt: bool,
) -> Residual:
    if include is not None:
        terms_num = torch.where(include, terms_num, torch.zeros_like(terms_num))
        terms_den = torch.where(include, terms_den, torch.zeros_like(terms_den))
        counted = include.long()
    else:
        counted = torch.ones_like(obs.i_obs, dtype=torch.long)
    if per_frame:
        index, n_frames = _frame_index(obs, None, None)
        num = _group_sum(terms_num, index, n_frames)
        den = _group_sum(terms_den, index, n_frames)
        n: int | torch.Tensor = _group_sum(counted, index, n_frames)
    else:
        num, den, n = terms_num.sum(), terms_den.sum(), int(counted.sum().item())
    ratio = _safe_ratio(num, den)
    return Residual(_safe_sqrt(ratio) if take_sqrt else ratio, n)


def wr_all(i_calc: torch.Tensor, obs: Observations, *, per_frame: bool = False) -> Residual:
    """wR_all = sqrt(Σ (w |I_o − I_c|)² / Σ (w I_o)²) over all reflections (eq. 2, 3).

    ``i_calc`` must already carry its scale (see :func:`frame_scales`).  The gradient is finite
    everywhere except exactly at wR = 0 (the square root), which only perfect data reach.
    """
    i_calc = _check_calc(i_calc, obs)
    w = obs.weight.to(i_calc.dtype)
    i_o = obs.i_obs.to(i_calc.dtype)
    return _reduce((w * (i_o - i_calc)) ** 2, (w * i_o) ** 2, None, obs, per_frame, take_sqrt=True)


def r_obs(i_calc: torch.Tensor, obs: Observations, *, per_frame: bool = False) -> Residual:
    """R_obs = Σ |√I_o − √I_c| / Σ √I_o over observed reflections, I_o > 3σ(I_o) (eq. 1).

    Negative I_c count as 0; the gradient of √I_c at I_c = 0 is taken as 0.
    """
    i_calc = _check_calc(i_calc, obs)
    f_o = obs.sqrt_i_obs.to(i_calc.dtype)
    return _reduce(torch.abs(f_o - _safe_sqrt(i_calc)), f_o, obs.observed, obs, per_frame, take_sqrt=False)


def wr_f(i_calc: torch.Tensor, obs: Observations, *, per_frame: bool = False) -> Residual:
    """Conventional F-based wR(F) = sqrt(Σ w_F (|F_o| − |F_c|)² / Σ w_F |F_o|²), all reflections.

    |F| = √I and w_F = 1/σ(F)² with σ(F) = σ(√I_o) from :func:`prepare_observations` (including
    the weak rule).  Reflections with σ(√I_o) = 0 are left out (their F weight is infinite).
    """
    i_calc = _check_calc(i_calc, obs)
    f_o = obs.sqrt_i_obs.to(i_calc.dtype)
    s = obs.sigma_sqrt.to(i_calc.dtype)
    usable = s > 0
    w_f = torch.where(usable, 1.0 / torch.where(usable, s, torch.ones_like(s)) ** 2, torch.zeros_like(s))
    return _reduce(w_f * (f_o - _safe_sqrt(i_calc)) ** 2, w_f * f_o**2, usable, obs, per_frame, take_sqrt=True)


def wr2(i_calc: torch.Tensor, obs: Observations, *, per_frame: bool = False) -> Residual:
    """Conventional wR2 on intensities, sqrt(Σ ((I_o − I_c)/σ(I_o))² / Σ (I_o/σ(I_o))²), all reflections.

    The weights 1/σ²(I_o) are SHELXL's with a = b = 0: for counting noise they make the least-squares
    estimate the efficient one, where eq. 3's F-space weights on intensity differences leave the weak
    reflections (which carry light atoms) under-weighted. I_o is taken as measured, negative
    values included.
    """
    i_calc = _check_calc(i_calc, obs)
    w, i_o = (x.to(i_calc.dtype) for x in obs.weighted("sigma"))
    return _reduce((w * (i_o - i_calc)) ** 2, (w * i_o) ** 2, None, obs, per_frame, take_sqrt=True)


def frame_scales(
    i_calc: torch.Tensor,
    obs: Observations,
    frame_index: torch.Tensor | None = None,
    n_frames: int | None = None,
    *,
    default: float = 1.0,
    weighting: str = "paper",
) -> torch.Tensor:
    """Closed-form per-frame scale k_f minimising that frame's Σ (w (I_o − k I_c))².

    k_f = Σ w² I_o I_c / Σ w² I_c², with w the wR_all weights of :func:`prepare_observations`
    (so the weights inside the closed form are w², the squares of eq. 3's w).  Scaling
    ``i_calc`` by ``k[frame_index]`` therefore gives the smallest wR_all attainable per frame,
    and the result is invariant to any constant factor on ``i_calc``.

    Args:
        i_calc: unscaled calculated intensities [n]; gradients flow through k.
        frame_index: frame of each reflection; default the one given to prepare_observations.
            With neither, one global scale is returned (shape [1]).
        n_frames: number of frames (default from the observations or max(frame_index)+1).
        default: the scale of a frame with Σ w² I_c² = 0 (no reflections, or I_c all zero).
        weighting: "paper" (eq. 3's w, for wR_all) or "sigma" (w = 1/σ(I_o) and the measured I_o,
            for :func:`wr2`).

    Returns:
        k, shape [n_frames]; apply with :func:`apply_frame_scales`.
    """
    i_calc = _check_calc(i_calc, obs)
    if frame_index is None and obs.frame_index is None:
        index, n = torch.zeros_like(obs.i_obs, dtype=torch.long), 1
    else:
        index, n = _frame_index(obs, frame_index, n_frames)
    w, i_o = obs.weighted(weighting)
    w2 = w.to(i_calc.dtype) ** 2
    num = _group_sum(w2 * i_o.to(i_calc.dtype) * i_calc, index, n)
    den = _group_sum(w2 * i_calc**2, index, n)
    ok = den > 0
    k = num / torch.where(ok, den, torch.ones_like(den))
    return torch.where(ok, k, torch.full_like(k, default))


def r_obs_frame_factors(i_calc: torch.Tensor, obs: Observations) -> torch.Tensor:
    """Per-frame factor c_f on ``i_calc`` that minimises that frame's R_obs exactly.

    Σ |√I_o − √c √I_c| is convex and piecewise linear in s = √c, so its minimum lies at the
    weighted median of √I_o / √I_c with weights √I_c (over the frame's observed reflections).
    A frame without observed reflections, or with I_c = 0 on all of them, gets the factor 1.
    This is what the authors' code scores per rotation, there by a 100-point scale grid.
    Not differentiable (a report quantity); returns c, shape [n_frames].
    """
    i_calc = _check_calc(i_calc, obs).detach()
    index, n_frames = _frame_index(obs, None, None)
    f_c = _safe_sqrt(i_calc)
    use = obs.observed & (f_c > 0)
    frames, f_o, f_c = index[use], obs.sqrt_i_obs.to(i_calc.dtype)[use], f_c[use]
    factors = torch.ones(n_frames, dtype=i_calc.dtype, device=i_calc.device)
    if frames.numel() == 0:
        return factors
    ratio = f_o / f_c
    # sort by ratio within frames (two stable sorts), then the first point where the running
    # weight of the frame reaches half its total weight is the weighted median
    order = torch.argsort(ratio, stable=True)
    order = order[torch.argsort(frames[order], stable=True)]
    frames, ratio, weight = frames[order], ratio[order], f_c[order]
    total = _group_sum(weight, frames, n_frames)
    before = torch.cumsum(total, 0) - total  # weight of all earlier frames
    running = torch.cumsum(weight, 0) - before[frames]
    reached = running >= 0.5 * total[frames]
    position = torch.arange(frames.numel(), device=frames.device)
    first = torch.full((n_frames,), frames.numel(), dtype=torch.long, device=frames.device)
    first = first.scatter_reduce(0, frames[reached], position[reached], reduce="amin")
    has = first < frames.numel()
    factors[has] = ratio[first[has]] ** 2
    return factors


def apply_frame_scales(
    i_calc: torch.Tensor, scales: torch.Tensor, frame_index: torch.Tensor | None = None
) -> torch.Tensor:
    """``i_calc * scales[frame_index]`` (a single scale when ``frame_index`` is None)."""
    if frame_index is None:
        if scales.numel() != 1:
            raise ExperimentError(f"{scales.numel()} scales given but no frame_index to apply them")
        return i_calc * scales.reshape(())
    return i_calc * scales[torch.as_tensor(frame_index, device=scales.device).long()]


@dataclass(frozen=True)
class ResidualReport:
    """The residuals to report with every refinement, as fractions (``str`` shows percent)."""

    r_obs: float
    wr_all: float
    n_obs: int
    n_all: int
    wr_f: float
    #: the authors' convention (diffBloch reports these): means over frames of each frame's own
    #: R_obs (with the scale that minimises it) and wR (with the given, wR-optimal scale); NaN
    #: without a frame index
    r_obs_frame_mean: float = float("nan")
    wr_all_frame_mean: float = float("nan")

    def __str__(self) -> str:
        text = (
            f"R_obs = {100 * self.r_obs:.2f} % ({self.n_obs} obs), "
            f"wR_all = {100 * self.wr_all:.2f} % ({self.n_all} all), "
            f"wR(F) = {100 * self.wr_f:.2f} %"
        )
        if self.r_obs_frame_mean == self.r_obs_frame_mean:
            text += (f"; means over frames: R_obs {100 * self.r_obs_frame_mean:.2f} %, "
                     f"wR {100 * self.wr_all_frame_mean:.2f} %")
        return text

    def to_dict(self) -> dict[str, float | int]:
        """Plain values (fractions) for JSON and tables."""
        return {"R_obs": self.r_obs, "wR_all": self.wr_all, "N_obs": self.n_obs, "N_all": self.n_all, "wR_F": self.wr_f,
                "R_obs_frame_mean": self.r_obs_frame_mean, "wR_all_frame_mean": self.wr_all_frame_mean}


def frame_means(i_calc: torch.Tensor, obs: Observations) -> tuple[float, float]:
    """(R_obs, wR) averaged over frames, as the authors' code reports them.

    R_obs of each frame is taken at the factor of :func:`r_obs_frame_factors` (its own minimum),
    wR of each frame at the scale ``i_calc`` already carries; frames without observed (for R_obs)
    or any (for wR) reflections are left out of the mean.
    """
    with torch.no_grad():
        i_calc = _check_calc(i_calc, obs).detach()
        c = r_obs_frame_factors(i_calc, obs)
        r = r_obs(apply_frame_scales(i_calc, c, obs.frame_index), obs, per_frame=True)
        wr = wr_all(i_calc, obs, per_frame=True)
        r_frames, wr_frames = r.value[r.n > 0], wr.value[wr.n > 0]
    nan = float("nan")
    return (float(r_frames.mean()) if r_frames.numel() else nan,
            float(wr_frames.mean()) if wr_frames.numel() else nan)


def residual_report(i_calc: torch.Tensor, obs: Observations) -> ResidualReport:
    """All residuals of already scaled ``i_calc`` against ``obs`` as plain numbers."""
    with torch.no_grad():
        i_calc = _check_calc(i_calc, obs).detach()
        wr = wr_all(i_calc, obs)
        r = r_obs(i_calc, obs)
        f = wr_f(i_calc, obs)
        means = frame_means(i_calc, obs) if obs.frame_index is not None else (float("nan"), float("nan"))
    return ResidualReport(r_obs=float(r.value), wr_all=float(wr.value), n_obs=int(r.n), n_all=int(wr.n), wr_f=float(f.value),
                          r_obs_frame_mean=means[0], wr_all_frame_mean=means[1])
