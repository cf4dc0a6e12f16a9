"""The refinement objective (paper, Methods 4.2): wR_all of per-frame scaled Bloch-wave intensities.

Per evaluation: thickness of every frame from the thickness model at the frame angles, the
unscaled I_calc of every scored reflection from the forward model, closed-form per-frame scales
(the least-squares optimum for that frame), and wR_all over the training frames as the loss
(``loss="wr_all"``), or the mean over frames of each frame's own wR (``loss="frame_mean"``): the
paper averages the loss over rotations (Methods 4.2), which weighs every frame equally instead
of by its total weighted intensity; or (``loss="wr2"``) the conventional σ-weighted wR2 on
intensities, w = 1/σ²(I_o), with the frame scales fitted under the same weights: the efficient
least-squares estimate for counting noise (eq. 3 under-weights weak reflections).
Validation frames (held out for early stopping) are simulated in the same pass; their scales
are fitted too (a scale is a per-frame nuisance parameter) but they do not enter the loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..experiment.residuals import apply_frame_scales, frame_scales, r_obs, residual_report, wr2, wr_all
from .model import RefinementError, RefinementModel

#: loss = wR_all over every training reflection, the mean of the training frames' own wR, or the
#: σ-weighted wR2 over every training reflection
LOSSES = ("wr_all", "frame_mean", "wr2")


@dataclass
class Evaluation:
    """One pass of the objective; tensors keep their graph (``loss``) unless evaluated without grad."""

    loss: torch.Tensor  # wR_all over the training reflections, or the frames' mean wR
    i_calc: torch.Tensor  # scaled I_calc of every reflection
    i_unscaled: torch.Tensor
    scales: torch.Tensor  # [n_frames]
    thickness: torch.Tensor  # [n_frames]
    wr_validation: float | None


class Objective:
    """wR_all of a :class:`RefinementModel` against a forward model's observations.

    ``validation_frames``: frame indices held out of the loss (their wR is ``wr_validation``);
    ``loss``: one of :data:`LOSSES`.
    """

    def __init__(self, forward, model: RefinementModel, *, validation_frames=None, loss: str = "wr_all"):
        if loss not in LOSSES:
            raise RefinementError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        self.loss = loss
        if model.n_frames != forward.experiment.n_frames:
            raise RefinementError(f"the model has {model.n_frames} frames, the experiment {forward.experiment.n_frames}")
        self.forward = forward
        self.model = model
        self.obs = forward.observations
        frames = forward.frame_index
        n_frames = forward.experiment.n_frames
        val = np.unique(np.asarray([] if validation_frames is None else validation_frames, dtype=int))
        if val.size and (val.min() < 0 or val.max() >= n_frames):
            raise RefinementError(f"validation frames must lie in 0..{n_frames - 1}, got {val.tolist()}")
        if val.size >= n_frames:
            raise RefinementError("every frame is held out for validation; keep some for refinement")
        #: the weights of the loss, for the frame scales and the s.u. (residuals.Observations.weighted)
        self.weighting = "sigma" if loss == "wr2" else "paper"
        self.obs.weighted(self.weighting)  # a clear error now if some weight cannot be formed (σ = 0)
        self.validation_frames = val
        is_val = torch.as_tensor(np.isin(frames.cpu().numpy(), val), device=frames.device)
        self.train_mask = ~is_val
        self.train_obs = self.obs.subset(self.train_mask) if val.size else self.obs
        self.val_obs = self.obs.subset(is_val) if val.size else None
        if self.train_obs.n_all == 0:
            raise RefinementError("no reflection left for refinement after holding out the validation frames")
        if self.val_obs is not None and self.val_obs.n_all == 0:
            raise RefinementError(f"validation frames {val.tolist()} have no scored reflection")

    def evaluate(self) -> Evaluation:
        """Simulate every frame at the current parameters and compute the loss (differentiable)."""
        model = self.model
        thickness = model.frame_thickness()
        i_unscaled = self.forward.intensities(thickness, atoms=model.atoms(), rotations=model.rotations())
        scales = frame_scales(i_unscaled, self.obs, weighting=self.weighting)
        i_calc = apply_frame_scales(i_unscaled, scales, self.obs.frame_index)
        if self.val_obs is None:
            loss = self._loss(i_calc, self.obs)
            wr_val = None
        else:
            loss = self._loss(i_calc[self.train_mask], self.train_obs)
            wr_val = float(wr_all(i_calc.detach()[~self.train_mask], self.val_obs).value)
        return Evaluation(loss=loss, i_calc=i_calc, i_unscaled=i_unscaled, scales=scales,
                          thickness=thickness, wr_validation=wr_val)

    def _loss(self, i_calc: torch.Tensor, obs) -> torch.Tensor:
        if self.loss == "wr_all":
            return wr_all(i_calc, obs).value
        if self.loss == "wr2":
            return wr2(i_calc, obs).value
        per_frame = wr_all(i_calc, obs, per_frame=True)
        return per_frame.value[per_frame.n > 0].mean()  # frames without reflections do not count

    def report(self, evaluation: Evaluation):
        """R_obs, wR_all, N_obs, N_all, wR(F) over every reflection (training and validation)."""
        return residual_report(evaluation.i_calc.detach(), self.obs)

    def frame_r(self, evaluation: Evaluation) -> np.ndarray:
        """Per-frame R_obs (fraction) as NumPy."""
        with torch.no_grad():
            return r_obs(evaluation.i_calc.detach(), self.obs, per_frame=True).value.cpu().numpy().copy()
