"""Thickness models: torch modules mapping a frame's rotation angle θ to an apparent thickness.

Conventions (all models):

* θ is the frame's goniometer rotation angle **in degrees** (as PETS2 and most 3D-ED software
  write it); any tensor shape goes in, the same shape of thicknesses **in Å** comes out.
* ``forward(theta)`` gives the (mean) thickness; ``distribution(theta)`` gives (mean, σ) (σ = 0
  for the deterministic models); ``sample(theta, n_samples, generator)`` draws reparameterised
  samples [n_samples, *theta.shape]; ``describe()`` returns readable values; ``fit_to(theta,
  thickness)`` warm-starts the model from a given profile (e.g. a per-frame grid search).
* Models that need a normalised angle take ``theta_range=(θ_lo, θ_hi)`` in degrees, usually the
  dataset's frame range, and use u = 2 (θ − θ_lo)/(θ_hi − θ_lo) − 1 ∈ [−1, 1].
* Parameters are float64 by default (``dtype=``); results are deterministic given ``torch.manual_seed``
  (or the ``seed`` argument of :class:`ThicknessNN`).

Models: :class:`ConstantThickness`, :class:`PerFrameThickness`, :class:`GeometricThickness`
(t0 [(1 − w) + w / cos(θ − θ0)], plate w = 1, rod/sphere w = 0), :class:`QuadraticThickness`
and the paper's :class:`ThicknessNN` (Methods 4.1.2).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from edwidgets.errors import ExperimentError

#: floor of the quadratic model, Å: t = FLOOR + softplus(raw − FLOOR) never reaches 0.
QUADRATIC_FLOOR_A = 1.0
#: cos(θ − θ0) is clamped here in the geometric model (|θ − θ0| ≲ 87°) to keep 1/cos finite.
MIN_COS = 0.05


def _tensor(x: Any, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=dtype, device=device)
    return t


def _check_range(name: str, lo_hi: tuple[float, float], *, positive: bool = False, strict: bool = True) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in lo_hi)
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"{name} must be a pair of numbers (low, high), got {lo_hi!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or (hi <= lo if strict else hi < lo):
        raise ExperimentError(f"{name} must be finite with low < high, got ({lo}, {hi})")
    if positive and lo < 0:
        raise ExperimentError(f"{name} must not be negative, got ({lo}, {hi})")
    return lo, hi


def _positive_float(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ExperimentError(f"{name} must be a finite positive number, got {value}")
    return value


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of (xp, fp) at x, xp sorted ascending, constant beyond the ends."""
    if xp.numel() == 1:
        return fp.expand(x.shape).clone()
    idx = torch.searchsorted(xp, x.contiguous()).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    frac = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return fp[idx - 1] * (1.0 - frac) + fp[idx] * frac


class ThicknessModel(nn.Module):
    """Base class: θ (degrees) → apparent thickness (Å).  Subclasses implement ``distribution``
    or ``forward``, and ``describe``."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self._dtype = dtype

    # ---- helpers -------------------------------------------------------------------------
    def _param_dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return self._dtype

    def _param_device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def _theta(self, theta: Any) -> torch.Tensor:
        t = torch.as_tensor(theta, device=self._param_device())
        t = t.to(self._param_dtype())
        if not torch.isfinite(t).all():
            raise ExperimentError("frame angles θ must be finite")
        return t

    # ---- API -----------------------------------------------------------------------------
    def forward(self, theta: torch.Tensor) -> torch.Tensor:  # noqa: D401
        """Mean thickness in Å at the frame angles ``theta`` (degrees), same shape."""
        return self.distribution(theta)[0]

    def distribution(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, σ) of the thickness in Å; σ is zero for deterministic models."""
        mean = self.forward(theta)
        return mean, torch.zeros_like(mean)

    def sample(
        self, theta: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reparameterised samples t = μ + σ ε, ε ~ N(0, 1), shape [n_samples, *theta.shape].

        Gradients flow into μ and σ.  Samples are clamped at 0 Å (the clamp only acts when σ is
        comparable to μ).
        """
        if int(n_samples) < 1:
            raise ExperimentError(f"n_samples must be ≥ 1, got {n_samples}")
        mean, sigma = self.distribution(theta)
        eps = torch.randn((int(n_samples), *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
        return (mean + sigma * eps).clamp_min(0.0)

    def describe(self) -> dict[str, Any]:
        """Readable parameter values (plain Python numbers)."""
        raise NotImplementedError

    def fit_to(
        self,
        theta: torch.Tensor,
        thickness: torch.Tensor,
        steps: int = 200,
        *,
        weight: torch.Tensor | None = None,
    ) -> float:
        """Fit the model's mean thickness to a given profile (warm start); returns the RMS error in Å.

        The default minimises the (weighted) mean squared error with L-BFGS (strong-Wolfe line
        search, at most ``steps`` iterations); models with a closed form override this.
        """
        theta_t, target, w = self._fit_inputs(theta, thickness, weight)
        scale = float(target.abs().mean().clamp_min(1.0))
        params = [p for p in self.parameters() if p.requires_grad]
        if params:
            opt = torch.optim.LBFGS(
                params,
                lr=1.0,
                max_iter=int(steps),
                max_eval=int(steps) * 2,
                history_size=50,
                tolerance_grad=1e-12,
                tolerance_change=1e-16,
                line_search_fn="strong_wolfe",
            )

            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = (w * ((self.forward(theta_t) - target) / scale) ** 2).sum()
                loss.backward()
                return loss

            opt.step(closure)
        return self._rms(theta_t, target, w)

    def _fit_inputs(self, theta: Any, thickness: Any, weight: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        theta_t = self._theta(theta).reshape(-1)
        target = torch.as_tensor(thickness, dtype=theta_t.dtype, device=theta_t.device).reshape(-1)
        if target.shape != theta_t.shape or theta_t.numel() == 0:
            raise ExperimentError(
                f"fit_to needs matching non-empty θ and thickness, got {theta_t.numel()} and {target.numel()} values"
            )
        if not torch.isfinite(target).all():
            raise ExperimentError("fit_to: target thickness must be finite")
        if weight is None:
            w = torch.full_like(target, 1.0 / target.numel())
        else:
            w = torch.as_tensor(weight, dtype=target.dtype, device=target.device).reshape(-1)
            if w.shape != target.shape or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
                raise ExperimentError("fit_to: weights must be finite, ≥ 0, not all zero and match θ")
            w = w / w.sum()
        return theta_t, target, w

    @torch.no_grad()
    def _rms(self, theta: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> float:
        return float(torch.sqrt((w * (self.forward(theta) - target) ** 2).sum()))


class _NormalisedAngle(ThicknessModel):
    """Mixin for models that work on u = 2 (θ − θ_lo)/(θ_hi − θ_lo) − 1."""

    def __init__(self, theta_range: tuple[float, float], dtype: torch.dtype) -> None:
        super().__init__(dtype)
        lo, hi = _check_range("theta_range", theta_range)
        self.register_buffer("theta_range", torch.tensor([lo, hi], dtype=dtype))

    def normalise(self, theta: torch.Tensor) -> torch.Tensor:
        """θ (degrees) → u ∈ [−1, 1] over ``theta_range``."""
        lo, hi = self.theta_range[0], self.theta_range[1]
        return 2.0 * (self._theta(theta) - lo) / (hi - lo) - 1.0

    @torch.no_grad()
    def _profile_summary(self) -> dict[str, float]:
        lo, hi = (float(v) for v in self.theta_range)
        t = self.forward(torch.linspace(lo, hi, 101, dtype=self.theta_range.dtype, device=self.theta_range.device))
        return {"min": float(t.min()), "mean": float(t.mean()), "max": float(t.max())}


class ConstantThickness(ThicknessModel):
    """t(θ) = t0 for every frame (t0 > 0 kept positive through a log parameter)."""

    def __init__(self, t0: float, *, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(dtype)
        self.log_t0 = nn.Parameter(torch.tensor(math.log(_positive_float("t0", t0)), dtype=dtype))

    @property
    def t0(self) -> torch.Tensor:
        return torch.exp(self.log_t0)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = self._theta(theta)
        return self.t0.expand(theta.shape) + 0.0 * theta

    def describe(self) -> dict[str, Any]:
        return {"model": "constant", "t0_A": self.t0.item()}

    def fit_to(self, theta, thickness, steps: int = 200, *, weight=None) -> float:
        """Closed form: the (weighted) mean thickness."""
        theta_t, target, w = self._fit_inputs(theta, thickness, weight)
        mean = float((w * target).sum())
        with torch.no_grad():
            self.log_t0.fill_(math.log(_positive_float("mean target thickness", mean)))
        return self._rms(theta_t, target, w)


class PerFrameThickness(ThicknessModel):
    """A free thickness per frame, linearly interpolated in θ between the frames' angles.

    Args:
        values: initial thickness of each frame in Å (> 0; kept positive via log parameters).
        theta: the frames' angles in degrees (distinct); default 0, 1, 2, ... so that the frame
            number can be passed as θ.
    """

    def __init__(self, values: torch.Tensor, theta: torch.Tensor | None = None, *, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(dtype)
        values = torch.as_tensor(values, dtype=dtype).reshape(-1)
        if values.numel() == 0 or not torch.isfinite(values).all() or (values <= 0).any():
            raise ExperimentError("PerFrameThickness needs at least one finite, positive thickness per frame")
        nodes = torch.arange(values.numel(), dtype=dtype) if theta is None else torch.as_tensor(theta, dtype=dtype).reshape(-1)
        if nodes.shape != values.shape or not torch.isfinite(nodes).all():
            raise ExperimentError(f"PerFrameThickness: {nodes.numel()} angles for {values.numel()} values")
        order = torch.argsort(nodes)
        nodes, values = nodes[order], values[order]
        if nodes.numel() > 1 and (torch.diff(nodes) <= 0).any():
            raise ExperimentError("PerFrameThickness: frame angles must be distinct")
        self.register_buffer("theta_nodes", nodes)
        self.log_values = nn.Parameter(torch.log(values))

    @property
    def values(self) -> torch.Tensor:
        """Thickness at each frame angle (sorted by angle), Å."""
        return torch.exp(self.log_values)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = self._theta(theta)
        return _interp(theta.reshape(-1), self.theta_nodes, self.values).reshape(theta.shape)

    def describe(self) -> dict[str, Any]:
        v = self.values.detach()
        return {
            "model": "per-frame",
            "n_frames": int(v.numel()),
            "min_A": float(v.min()),
            "mean_A": float(v.mean()),
            "max_A": float(v.max()),
        }

    def fit_to(self, theta, thickness, steps: int = 200, *, weight=None) -> float:
        """Closed form: the target profile interpolated at the frame angles (weights unused)."""
        theta_t, target, w = self._fit_inputs(theta, thickness, weight)
        order = torch.argsort(theta_t)
        xs, ys = theta_t[order], target[order]
        if xs.numel() > 1 and (torch.diff(xs) <= 0).any():
            raise ExperimentError("PerFrameThickness.fit_to: target angles must be distinct")
        new = _interp(self.theta_nodes, xs, ys)
        if (new <= 0).any():
            raise ExperimentError("PerFrameThickness.fit_to: target thickness must be positive")
        with torch.no_grad():
            self.log_values.copy_(torch.log(new))
        return self._rms(theta_t, target, w)


class GeometricThickness(ThicknessModel):
    """t(θ) = t0 [(1 − w) + w / cos(θ − θ0)]: a plate (w = 1) to a rod or sphere (w = 0).

    t0 > 0 (log parameter), w ∈ [0, 1] (sigmoid of a logit; w = 0 or 1 exactly is started at
    1e-6 from the end), θ0 in degrees is the angle at which the beam is along the plate normal.
    cos(θ − θ0) is clamped at ``MIN_COS``.
    """

    def __init__(self, t0: float, w: float = 1.0, theta0: float = 0.0, *, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(dtype)
        w = float(w)
        if not (0.0 <= w <= 1.0):
            raise ExperimentError(f"GeometricThickness: w must lie in [0, 1], got {w}")
        w = min(max(w, 1e-6), 1.0 - 1e-6)
        self.log_t0 = nn.Parameter(torch.tensor(math.log(_positive_float("t0", t0)), dtype=dtype))
        self.w_logit = nn.Parameter(torch.tensor(math.log(w / (1.0 - w)), dtype=dtype))
        self.theta0 = nn.Parameter(torch.tensor(float(theta0), dtype=dtype))

    @property
    def t0(self) -> torch.Tensor:
        return torch.exp(self.log_t0)

    @property
    def w(self) -> torch.Tensor:
        return torch.sigmoid(self.w_logit)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = self._theta(theta)
        cos = torch.cos(torch.deg2rad(theta - self.theta0)).clamp_min(MIN_COS)
        w = self.w
        return self.t0 * ((1.0 - w) + w / cos)

    def describe(self) -> dict[str, Any]:
        return {"model": "geometric", "t0_A": self.t0.item(), "w": self.w.item(), "theta0_deg": self.theta0.item()}


class QuadraticThickness(_NormalisedAngle):
    """t(θ) = 1 Å + softplus(a u² + b u + c − 1 Å), u ∈ [−1, 1] the angle normalised over ``theta_range``.

    a, b, c are in Å (c is the thickness at the range centre, a + c − b and a + c + b at the
    ends).  The softplus (in Å, β = 1) keeps t ≥ 1 Å (``QUADRATIC_FLOOR_A``) and is the
    identity a u² + b u + c above ~20 Å.
    """

    def __init__(
        self, a: float, b: float, c: float, *, theta_range: tuple[float, float], dtype: torch.dtype = torch.float64
    ) -> None:
        super().__init__(theta_range, dtype)
        self.a = nn.Parameter(torch.tensor(float(a), dtype=dtype))
        self.b = nn.Parameter(torch.tensor(float(b), dtype=dtype))
        self.c = nn.Parameter(torch.tensor(float(c), dtype=dtype))

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        u = self.normalise(theta)
        raw = self.a * u**2 + self.b * u + self.c
        return QUADRATIC_FLOOR_A + F.softplus(raw - QUADRATIC_FLOOR_A)

    def describe(self) -> dict[str, Any]:
        return {
            "model": "quadratic",
            "a_A": self.a.item(),
            "b_A": self.b.item(),
            "c_A": self.c.item(),
            "theta_range_deg": [float(v) for v in self.theta_range],
            "thickness_on_range_A": self._profile_summary(),
        }

    def fit_to(self, theta, thickness, steps: int = 200, *, weight=None) -> float:
        """Weighted linear least squares of a u² + b u + c (exact while the profile is > ~20 Å)."""
        theta_t, target, w = self._fit_inputs(theta, thickness, weight)
        u = self.normalise(theta_t).detach()
        design = torch.stack([u**2, u, torch.ones_like(u)], dim=1)
        sw = torch.sqrt(w)[:, None]
        coef = torch.linalg.lstsq(design * sw, (target * sw[:, 0])[:, None]).solution[:, 0]
        with torch.no_grad():
            self.a.fill_(coef[0])
            self.b.fill_(coef[1])
            self.c.fill_(coef[2])
        return self._rms(theta_t, target, w)


class ThicknessNN(_NormalisedAngle):
    """The paper's apparent-thickness network (Methods 4.1.2).

    u = normalised θ → Linear(1, 64) → Tanh → Linear(64, 64) → Tanh → Linear(64, 2) → (z_μ, z_logvar).

    * Mean: μ = t_min + (t_max − t_min) · sigmoid(z), so μ always lies in ``thickness_range``.
      Without a prior z = z_μ.  With ``quadratic_prior=True`` the network learns a residual
      around a learnable quadratic q(u) = a u² + b u + c (a = exp(log_a) > 0, in Å):
      z = logit((q − t_min)/(t_max − t_min)) + z_μ, so μ = q exactly where z_μ = 0 (the prior's
      fraction of the range is clamped to [1e-4, 1 − 1e-4]: outside the range it stops pulling).
    * Spread: the second output plays the role of log σ², squashed monotonically into the user
      range: σ = σ_min + (σ_max − σ_min) · sigmoid(z_logvar).
    * ``sample`` draws μ + σ ε (reparameterisation trick).

    Args:
        theta_range: (θ_lo, θ_hi) in degrees mapped to u = −1 … 1 (the dataset's frame range).
        thickness_range: (t_min, t_max) in Å (e.g. (100, 2000) for 10–200 nm).
        sigma_range: (σ_min, σ_max) in Å.
        hidden: width of the two hidden layers (paper: 64).
        quadratic_prior: blend with the learnable quadratic prior.
        prior: initial (a, b, c) in Å, a > 0 (default a = 5 % of the range, b = 0, c = t_init).
        t_init: initial mean thickness in Å (default the middle of ``thickness_range``).
        seed: seed for the weight initialisation (default: the global torch RNG).
    """

    def __init__(
        self,
        theta_range: tuple[float, float],
        thickness_range: tuple[float, float] = (100.0, 2000.0),
        sigma_range: tuple[float, float] = (1.0, 50.0),
        *,
        hidden: int = 64,
        quadratic_prior: bool = False,
        prior: tuple[float, float, float] | None = None,
        t_init: float | None = None,
        seed: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(theta_range, dtype)
        t_min, t_max = _check_range("thickness_range", thickness_range, positive=True)
        s_min, s_max = _check_range("sigma_range", sigma_range, positive=True, strict=False)
        if t_init is None:
            t_init = 0.5 * (t_min + t_max)
        if not (t_min < float(t_init) < t_max):
            raise ExperimentError(f"t_init {t_init} Å must lie strictly inside thickness_range ({t_min}, {t_max})")
        self.register_buffer("thickness_range", torch.tensor([t_min, t_max], dtype=dtype))
        self.register_buffer("sigma_range", torch.tensor([s_min, s_max], dtype=dtype))
        self.quadratic_prior = bool(quadratic_prior)

        def build() -> nn.Sequential:
            net = nn.Sequential(
                nn.Linear(1, hidden, dtype=dtype),
                nn.Tanh(),
                nn.Linear(hidden, hidden, dtype=dtype),
                nn.Tanh(),
                nn.Linear(hidden, 2, dtype=dtype),
            )
            with torch.no_grad():
                # a quiet start: the output begins near t_init (or the prior) and σ near mid-range
                net[-1].weight.mul_(0.1)
                net[-1].bias.zero_()
            return net

        if seed is None:
            self.net = build()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                self.net = build()

        if self.quadratic_prior:
            a, b, c = prior if prior is not None else (0.05 * (t_max - t_min), 0.0, float(t_init))
            self.log_a = nn.Parameter(torch.tensor(math.log(_positive_float("prior a", a)), dtype=dtype))
            self.b = nn.Parameter(torch.tensor(float(b), dtype=dtype))
            self.c = nn.Parameter(torch.tensor(float(c), dtype=dtype))
        else:
            if prior is not None:
                raise ExperimentError("ThicknessNN: a prior was given but quadratic_prior is False")
            p = (float(t_init) - t_min) / (t_max - t_min)
            with torch.no_grad():
                self.net[-1].bias[0] = math.log(p / (1.0 - p))

    def prior_thickness(self, theta: torch.Tensor) -> torch.Tensor:
        """The quadratic prior q(θ) in Å (only with ``quadratic_prior=True``)."""
        if not self.quadratic_prior:
            raise ExperimentError("ThicknessNN was built without a quadratic prior")
        u = self.normalise(theta)
        return torch.exp(self.log_a) * u**2 + self.b * u + self.c

    def distribution(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.normalise(theta)
        out = self.net(u.reshape(-1, 1))
        z_mu, z_logvar = out[:, 0].reshape(u.shape), out[:, 1].reshape(u.shape)
        t_min, t_max = self.thickness_range[0], self.thickness_range[1]
        if self.quadratic_prior:
            q = torch.exp(self.log_a) * u**2 + self.b * u + self.c
            frac = ((q - t_min) / (t_max - t_min)).clamp(1e-4, 1.0 - 1e-4)
            z_mu = torch.logit(frac) + z_mu
        mean = t_min + (t_max - t_min) * torch.sigmoid(z_mu)
        s_min, s_max = self.sigma_range[0], self.sigma_range[1]
        sigma = s_min + (s_max - s_min) * torch.sigmoid(z_logvar)
        return mean, sigma

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": "ThicknessNN",
            "theta_range_deg": [float(v) for v in self.theta_range],
            "thickness_range_A": [float(v) for v in self.thickness_range],
            "sigma_range_A": [float(v) for v in self.sigma_range],
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
            "thickness_on_range_A": self._profile_summary(),
            "quadratic_prior": None,
        }
        if self.quadratic_prior:
            d["quadratic_prior"] = {"a_A": self.log_a.exp().item(), "b_A": self.b.item(), "c_A": self.c.item()}
        return d

    def fit_to(self, theta, thickness, steps: int = 300, *, weight=None) -> float:
        """Warm start of the mean: Adam for a quarter of ``steps``, then L-BFGS for the rest.

        Only the mean is fitted; with a quadratic prior, the prior is first fitted by least
        squares (its a clamped to > 0) and the network then learns the residual.
        """
        theta_t, target, w = self._fit_inputs(theta, thickness, weight)
        t_min, t_max = (float(v) for v in self.thickness_range)
        if (target <= t_min).any() or (target >= t_max).any():
            raise ExperimentError(
                f"ThicknessNN.fit_to: target thickness {float(target.min()):.1f}–{float(target.max()):.1f} Å "
                f"leaves thickness_range ({t_min}, {t_max}); widen the range"
            )
        if self.quadratic_prior:
            u = self.normalise(theta_t).detach()
            design = torch.stack([u**2, u, torch.ones_like(u)], dim=1)
            sw = torch.sqrt(w)[:, None]
            a, b, c = torch.linalg.lstsq(design * sw, (target * sw[:, 0])[:, None]).solution[:, 0].tolist()
            with torch.no_grad():
                self.log_a.fill_(math.log(max(a, 1e-3 * (t_max - t_min))))
                self.b.fill_(b)
                self.c.fill_(c)
        scale = t_max - t_min
        n_adam = max(int(steps) // 4, 1)
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        for _ in range(n_adam):
            opt.zero_grad()
            loss = (w * ((self.forward(theta_t) - target) / scale) ** 2).sum()
            loss.backward()
            opt.step()
        return super().fit_to(theta_t, target, max(int(steps) - n_adam, 1), weight=w)
