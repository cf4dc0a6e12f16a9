"""A refinement job: runs the optimizer in a background thread and emits one Snapshot per epoch.

Implements :class:`edwidgets.refine.events.RefinementJobLike`. The worker checks the pause and
stop events between optimizer steps, so a stop always leaves a consistent, resumable state
(model, optimizer, epoch, history, best parameters). Checkpoints hold all of it, and a job
resumed from one follows the same trajectory as an uninterrupted run.

Epoch convention: epoch e (1-based) evaluates the parameters after e − 1 optimizer steps,
records their residuals, then takes step e. ``best_epoch`` counts the steps the best
parameters had taken (0 = the start model).
"""
from __future__ import annotations

import copy
import io
import logging
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io_utils import atomic_write_bytes
from .events import FramePattern, JobState, Snapshot, SnapshotBroadcaster, atom_records
from .model import PARAMETER_GROUPS, RefinementError, RefinementModel
from .objective import Evaluation, Objective

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "lbfgs")
CHECKPOINT_FORMAT = "edwidgets-refinement-checkpoint-1"
_TERMINAL = (JobState.FINISHED, JobState.STOPPED, JobState.FAILED)
_HISTORY_KEYS = ("epoch", "wR_all", "R_obs", "wR_val", "seconds")


class JobStateError(RefinementError, RuntimeError):
    """An action the job's current state does not allow (start while running, ...)."""


def default_threads(forward=None) -> int:
    """torch intra-op threads for a job: the cores left over by the forward model's frame workers."""
    from ..experiment.parallel import intra_op_threads

    return intra_op_threads(getattr(forward, "workers", 1))


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class RefinementJob(SnapshotBroadcaster):
    """Refine a :class:`RefinementModel` against a forward model's observations.

    Args:
        forward: an :class:`edwidgets.experiment.forward.ForwardModel`.
        model: the parameters to refine (groups frozen/freed there or via ``configure``).
        n_epochs: optimizer steps (full batch; paper: 200).
        optimizer: "adam" (paper), "adamw" or "lbfgs" (one L-BFGS iteration with a strong-Wolfe
            line search per epoch).
        lr: learning rate of every group (paper: 1e-3); ``lrs`` overrides it per group.
        weight_decay: AdamW's decoupled weight decay (0 for Adam).
        validation_frames: frames held out of the loss; their wR is ``wr_validation`` and the
            best epoch is chosen on it. ``patience``: stop when it has not improved for that many
            epochs (early stopping; needs validation frames).
        threads: ``torch.set_num_threads`` in the worker (default: the cores not used by the forward
            model's frame workers, i.e. 1 when it runs one frame per core).
        uncertainties: compute standard uncertainties of positions and ADPs at the end.
        loss: "wr_all" (wR_all of every training reflection), "frame_mean" (the mean of the
            frames' own wR, the paper's average over rotations) or "wr2" (σ-weighted); see :mod:`.objective`.
    """

    parameter_groups = PARAMETER_GROUPS

    def __init__(self, forward, model: RefinementModel, *, n_epochs: int = 200, optimizer: str = "adam",
                 lr: float = 1e-3, lrs: dict[str, float] | None = None, weight_decay: float = 0.0,
                 validation_frames=None, patience: int | None = None, threads: int | None = None,
                 uncertainties: bool = False, seed: int = 0, name: str = "refinement",
                 settings: dict[str, Any] | None = None, loss: str = "wr_all"):
        if int(n_epochs) < 1:
            raise RefinementError(f"n_epochs must be ≥ 1, got {n_epochs}")
        if optimizer not in OPTIMIZERS:
            raise RefinementError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not float(lr) > 0:
            raise RefinementError(f"learning rate must be > 0, got {lr}")
        if patience is not None and (int(patience) < 1 or validation_frames is None or len(validation_frames) == 0):
            raise RefinementError("early stopping (patience) needs patience ≥ 1 and validation frames")
        self.forward = forward
        self.model = model
        self.objective = Objective(forward, model, validation_frames=validation_frames, loss=loss)
        self.n_epochs = int(n_epochs)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.lrs = dict(lrs or {})
        self.weight_decay = float(weight_decay)
        self.patience = None if patience is None else int(patience)
        self.threads = int(threads) if threads else default_threads(forward)
        self.compute_uncertainties = bool(uncertainties)
        self.seed = int(seed)
        self.name = name
        self.settings = dict(settings or {})
        self.optimizer = self._build_optimizer()
        self.start_crystal = model.refined_crystal()

        self.state = JobState.IDLE
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.epoch = 0  # optimizer steps taken
        self.history: dict[str, list[float]] = {k: [] for k in _HISTORY_KEYS}
        self.best: dict[str, Any] | None = None
        self.epochs_since_best = 0
        self.elapsed_s = 0.0
        self.uncertainties = None
        self.message = ""
        self._last: dict[str, Any] | None = None  # numpy copies of the latest evaluation
        SnapshotBroadcaster.__init__(self)
        self._model_lock = threading.RLock()  # held by the worker during a step
        self._state_lock = threading.RLock()
        self._pause_event = threading.Event()
        self._stop_event = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future | None = None
        self._result = None
        torch.manual_seed(self.seed)

    # ------------------------------------------------------------------ set-up
    def _build_optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "lbfgs":
            params = [p for g in PARAMETER_GROUPS for p in self.model.group_parameters(g)]
            return torch.optim.LBFGS(params, lr=self.lr if self.lr != 1e-3 else 1.0, max_iter=1, max_eval=25, history_size=20,
                                     line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)
        groups = self.model.optimizer_groups(self.lr, self.lrs)
        if self.optimizer_name == "adamw":
            return torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay or 1e-2)
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def configure(self, settings: dict) -> None:
        """Dashboard settings: ``n_epochs``, ``learning_rate``, ``refine`` ({group: bool}); applied
        between epochs."""
        with self._model_lock:
            if "n_epochs" in settings:
                n = int(settings["n_epochs"])
                if n < 1:
                    raise RefinementError(f"n_epochs must be ≥ 1, got {n}")
                self.n_epochs = n
            if "learning_rate" in settings:
                lr = float(settings["learning_rate"])
                if not lr > 0:
                    raise RefinementError(f"learning_rate must be > 0, got {lr}")
                self.lr = lr
                self.lrs = {}
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
            if "refine" in settings:
                refine = {k: bool(v) for k, v in settings["refine"].items() if k != "scale"}  # scales are closed form
                unknown = set(refine) - set(PARAMETER_GROUPS)
                if unknown:
                    raise RefinementError(f"unknown parameter groups {sorted(unknown)}; known: {PARAMETER_GROUPS}")
                self.model.set_refined(**refine)

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Run the remaining epochs in a background thread (after a stop: continue)."""
        with self._state_lock:
            if self.state in (JobState.RUNNING, JobState.PAUSED, JobState.STOPPING):
                raise JobStateError(f"cannot start: the job is {self.state.value}")
            if self.state is JobState.FAILED:
                raise JobStateError(f"cannot start: the job failed ({self.error})")
            if self.epoch >= self.n_epochs:
                raise JobStateError(f"cannot start: all {self.n_epochs} epochs are done; raise n_epochs to continue")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edwidgets-refine")
            self._stop_event.clear()
            self._pause_event.clear()
            self.state = JobState.RUNNING
            self._result = None
            self._future = self._executor.submit(self._run)

    def pause(self) -> None:
        with self._state_lock:
            if self.state is JobState.RUNNING:
                self._pause_event.set()

    def resume(self) -> None:
        with self._state_lock:
            if self.state in (JobState.RUNNING, JobState.PAUSED):
                self._pause_event.clear()
                if self.state is JobState.PAUSED:
                    self.state = JobState.RUNNING

    def stop(self) -> None:
        """Stop after the current epoch; the result stays consistent and resumable."""
        with self._state_lock:
            if self.state in (JobState.RUNNING, JobState.PAUSED):
                self.state = JobState.STOPPING
                self._stop_event.set()
                self._pause_event.clear()

    def done(self) -> bool:
        return self.state in _TERMINAL

    def result(self, timeout: float | None = None):
        """Wait for the worker (``TimeoutError`` after ``timeout`` s) and return the
        :class:`~edwidgets.refine.results.RefinementResult` (best parameters so far).

        Re-raises the worker's exception if it failed; the best result so far is then attached to
        the exception as ``partial_result`` and stays available from :meth:`current_result`.
        """
        if self._future is None:
            return self.current_result()
        self._future.result(timeout=timeout)
        if self._result is None:
            self._result = self.current_result()
        return self._result

    def run(self):
        """Blocking variant: start, wait, return the result; Ctrl-C stops the job cleanly and
        returns the partial result."""
        if self.state not in (JobState.RUNNING, JobState.PAUSED):
            self.start()
        try:
            while True:
                try:
                    return self.result(timeout=0.2)
                except TimeoutError:
                    continue
        except KeyboardInterrupt:
            log.warning("interrupted: stopping the refinement after the current epoch")
            self.stop()
            while True:
                try:
                    return self.result()
                except KeyboardInterrupt:  # a second Ctrl-C while waiting: keep waiting for consistency
                    continue

    def close(self) -> None:
        """Stop and release the worker thread."""
        self.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        torch.set_num_threads(self.threads)
        try:
            while self.epoch < self.n_epochs:
                if self._wait_while_paused():
                    break
                t0 = time.perf_counter()
                with self._model_lock:
                    snap_fields = self._step()
                dt = time.perf_counter() - t0
                self.elapsed_s += dt
                self.history["seconds"].append(dt)
                self._emit(self._snapshot(JobState.RUNNING if not self._stop_event.is_set() else JobState.STOPPING,
                                          seconds_per_epoch=dt, **snap_fields))
                if self.patience is not None and self.epochs_since_best >= self.patience:
                    self.message = f"early stop: validation wR did not improve for {self.patience} epochs"
                    break
                if self._stop_event.is_set():
                    break
            with self._model_lock:
                self._finish()
            final = JobState.STOPPED if self._stop_event.is_set() else JobState.FINISHED
            if final is JobState.FINISHED and not self.message:
                self.message = f"finished {self.epoch} epochs"
            elif final is JobState.STOPPED:
                self.message = f"stopped after {self.epoch} epochs"
            with self._state_lock:
                self.state = final
            self._result = self.current_result()
            self._emit(self._snapshot(final))
        except BaseException as exc:  # noqa: BLE001 - a failing worker must never take the kernel down
            self.exception = exc
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("refinement failed at epoch %d: %s\n%s", self.epoch, self.error, traceback.format_exc())
            with self._state_lock:
                self.state = JobState.FAILED
            try:
                partial = self.current_result()
                exc.partial_result = partial  # type: ignore[attr-defined]
                self._result = partial
            except Exception:  # pragma: no cover - nothing more to save
                log.exception("could not assemble the partial result")
            self._emit(self._snapshot(JobState.FAILED, message=f"failed at epoch {self.epoch}", error=self.error))
            raise

    def _wait_while_paused(self) -> bool:
        """Block while paused; True when a stop was requested."""
        announced = False
        while self._pause_event.is_set() and not self._stop_event.is_set():
            if not announced:
                with self._state_lock:
                    if self.state is JobState.RUNNING:
                        self.state = JobState.PAUSED
                self._emit(self._snapshot(JobState.PAUSED, message="paused"))
                announced = True
            time.sleep(0.02)
        with self._state_lock:
            if self.state is JobState.PAUSED:
                self.state = JobState.RUNNING
        return self._stop_event.is_set()

    def _record(self, ev: Evaluation) -> tuple[float, dict]:
        """Residuals of an evaluation; updates best-epoch tracking. Returns (score, numbers)."""
        report = self.objective.report(ev)
        wr_val = ev.wr_validation
        score = wr_val if wr_val is not None else float(ev.loss.detach())
        if not np.isfinite(score):
            raise RefinementError(f"the residual became {score} at epoch {self.epoch + 1}; "
                                  "lower the learning rate or check the start model")
        self._last = {
            "i_calc": ev.i_calc.detach().cpu().numpy().copy(),
            "scales": ev.scales.detach().cpu().numpy().copy(),
            "thickness": ev.thickness.detach().cpu().numpy().copy(),
            "frame_r": self.objective.frame_r(ev),
            "report": report.to_dict(),
            "wr_validation": wr_val,
            "epoch": self.epoch,
            # orientation corrections of these same parameters, so frame_pattern never has to read
            # the live model (the optimizer step after this record moves it)
            "rotations": self._rotations_numpy(),
        }
        if self.best is None or score < self.best["score"]:
            self.best = {"score": score, "epoch": self.epoch, "state": _clone_state(self.model),
                         **{k: v for k, v in self._last.items() if k not in ("epoch", "rotations")}}
            self.epochs_since_best = 0
        else:
            self.epochs_since_best += 1
        return score, report.to_dict()

    def _step(self) -> dict:
        model, opt = self.model, self.optimizer
        before = model.group_vectors()
        atoms = atom_records(model.refined_crystal())
        if self.optimizer_name == "lbfgs":
            evaluations: list[Evaluation] = []

            def closure():
                opt.zero_grad(set_to_none=True)
                ev = self.objective.evaluate()
                ev.loss.backward()
                if not evaluations:
                    evaluations.append(ev)
                    self._record(ev)
                return ev.loss

            opt.step(closure)
            ev = evaluations[0]
        else:
            opt.zero_grad(set_to_none=True)
            ev = self.objective.evaluate()
            ev.loss.backward()
            self._record(ev)
            opt.step()
        after = model.group_vectors()
        shifts = {g: float((after[g] - before[g]).abs().max()) if after[g].numel() else 0.0 for g in PARAMETER_GROUPS}
        self.epoch += 1
        report = self._last["report"]
        self.history["epoch"].append(float(self.epoch))
        self.history["wR_all"].append(float(report["wR_all"]))
        self.history["R_obs"].append(float(report["R_obs"]))
        self.history["wR_val"].append(float("nan") if ev.wr_validation is None else float(ev.wr_validation))
        return {"atoms": atoms, "max_shift": shifts}

    @torch.no_grad()
    def _finish(self) -> None:
        """Evaluate the final parameters (they may beat every epoch) and the uncertainties."""
        ev = self.objective.evaluate()
        # best tracking without counting as an epoch: restore the patience counter afterwards
        since = self.epochs_since_best
        self._record(ev)
        self.epochs_since_best = since if self.best["epoch"] != self.epoch else 0
        if self.compute_uncertainties:
            self._compute_uncertainties()

    def _compute_uncertainties(self) -> None:
        from .uncertainties import standard_uncertainties

        current = _clone_state(self.model)
        try:
            self.model.load_state_dict(self.best["state"])
            with torch.enable_grad():
                self.uncertainties = standard_uncertainties(self.objective)
        except Exception as exc:  # s.u. are a bonus: never lose the refinement over them
            log.warning("standard uncertainties failed: %s", exc)
            self.uncertainties = None
            self.message = (self.message + f"; s.u. not computed ({exc})").lstrip("; ")
        finally:
            self.model.load_state_dict(current)

    # ------------------------------------------------------------------ snapshots
    def _snapshot(self, state: JobState, *, seconds_per_epoch: float = float("nan"), atoms=None,
                  max_shift=None, message: str | None = None, error: str | None = None) -> Snapshot:
        exp = self.forward.experiment
        last = self._last
        n_frames = exp.n_frames
        if atoms is None:
            if state in (JobState.FINISHED, JobState.STOPPED) and self.best is not None:
                atoms = atom_records(self.best_crystal(), self.uncertainties)
            else:
                atoms = atom_records(self.model.refined_crystal())
        obs = self.objective.obs
        report = last["report"] if last else {"wR_all": float("nan"), "R_obs": float("nan"),
                                              "N_obs": obs.n_obs, "N_all": obs.n_all}
        crystal = self.model.crystal
        return Snapshot(
            epoch=self.epoch,
            n_epochs=self.n_epochs,
            state=state,
            wr_all=float(report["wR_all"]),
            r_obs=float(report["R_obs"]),
            n_obs=int(report["N_obs"]),
            n_all=int(report["N_all"]),
            wr_validation=None if not last or last["wr_validation"] is None else float(last["wr_validation"]),
            history={k: np.asarray(v, dtype=float).copy() for k, v in self.history.items() if k != "seconds"},
            frame_angle_deg=np.asarray(exp.frame_angle_deg, dtype=float).copy(),
            thickness=last["thickness"].copy() if last else np.full(n_frames, np.nan),
            frame_r=last["frame_r"].copy() if last else np.full(n_frames, np.nan),
            frame_scale=last["scales"].copy() if last else np.ones(n_frames),
            atoms=atoms,
            cell=tuple(float(v) for v in crystal.cell),
            space_group=str(crystal.space_group_name),
            max_shift=dict(max_shift or {}),
            seconds_per_epoch=float(seconds_per_epoch),
            elapsed_s=float(self.elapsed_s),
            message=self.message if message is None else message,
            error=error,
        )

    # ------------------------------------------------------------------ per-frame patterns
    @property
    def frame_angle_deg(self) -> np.ndarray:
        """Tilt angle of each frame (deg); the dashboard sizes its frame slider with it."""
        return np.asarray(self.forward.experiment.frame_angle_deg, dtype=float).copy()

    def _rotations_numpy(self) -> np.ndarray | None:
        with torch.no_grad():
            rot = self.model.rotations()
        return None if rot is None else rot.detach().cpu().numpy().copy()

    def frame_pattern(self, frame: int) -> FramePattern:
        """Observed vs scaled calculated spots of one frame at the latest evaluated parameters.

        Safe to call from another thread (the UI) while the worker is mid-epoch: it reads only the
        latest evaluation record (NumPy copies, replaced as a whole, never mutated) and constant
        data, so it neither waits for the epoch nor sees half-updated parameters. Only before the
        first evaluation does it take the model lock and evaluate once.
        """
        exp = self.forward.experiment
        frame = int(frame)
        if not 0 <= frame < exp.n_frames:
            raise RefinementError(f"frame {frame} does not exist (0..{exp.n_frames - 1})")
        last = self._last  # one consistent record: i_calc, scales, thickness, R and rotations together
        if last is None:
            with self._model_lock:
                if self._last is None:
                    with torch.no_grad():
                        self._record(self.objective.evaluate())
                last = self._last
        rotations = last.get("rotations")
        rot_f = np.eye(3) if rotations is None else rotations[frame]
        rows = np.flatnonzero(self.forward.frame_index.cpu().numpy() == frame)
        hkl = self.forward.hkl[rows]
        orientation = np.asarray(exp.orientations[frame]) @ rot_f
        recip = self.forward.model.reciprocal_basis.detach().cpu().numpy()
        g_lab = hkl @ recip.T @ orientation.T
        obs = self.objective.obs
        return FramePattern(
            frame=frame,
            h=hkl[:, 0].copy(), k=hkl[:, 1].copy(), l=hkl[:, 2].copy(),
            x=g_lab[:, 0].copy(), y=g_lab[:, 1].copy(),
            i_obs=obs.i_obs[rows].cpu().numpy().copy(),
            sigma=obs.sigma_i[rows].cpu().numpy().copy(),
            i_calc=last["i_calc"][rows].copy(),
            r_frame=float(last["frame_r"][frame]),
            thickness=float(last["thickness"][frame]),
            angle_deg=float(exp.frame_angle_deg[frame]),
            orientation=orientation.copy(),
        )

    # ------------------------------------------------------------------ results
    def best_crystal(self):
        """The refined structure at the best epoch so far (the current one before any epoch)."""
        if self.best is None:
            return self.model.refined_crystal()
        params = copy.deepcopy(self.model.asu)
        params.load_state_dict({k[len("asu."):]: v for k, v in self.best["state"].items() if k.startswith("asu.")})
        return self.model.crystal.with_parameters(params)

    def current_result(self):
        """A :class:`RefinementResult` of the best parameters so far (safe at any time)."""
        from .results import RefinementResult

        with self._model_lock:
            if self.best is None:
                with torch.no_grad():
                    self._record(self.objective.evaluate())
            best = self.best
            counts = np.bincount(self.forward.frame_index.cpu().numpy(), minlength=self.forward.experiment.n_frames)
            settings = {
                "optimizer": self.optimizer_name, "lr": self.lr, "lrs": dict(self.lrs), "n_epochs": self.n_epochs,
                "loss": self.objective.loss, "weight_decay": self.weight_decay, "threads": self.threads, "seed": self.seed,
                "refined_groups": self.model.refined_groups(),
                "validation_frames": [int(v) for v in self.objective.validation_frames],
                "patience": self.patience, "thickness_model": self.model.thickness.describe(),
                "g_max": self.forward.g_max, "sg_max": self.forward.sg_max, "n_samples": self.forward.n_samples,
                **self.settings,
            }
            return RefinementResult(
                crystal=self.best_crystal(),
                start_crystal=self.start_crystal,
                state=self.state.value,
                report=dict(best["report"]),
                wr_validation=best["wr_validation"],
                best_epoch=int(best["epoch"]),
                epochs=int(self.epoch),
                history={k: np.asarray(v, dtype=float).copy() for k, v in self.history.items()},
                frame_angle_deg=np.asarray(self.forward.experiment.frame_angle_deg, dtype=float).copy(),
                thickness=best["thickness"].copy(),
                frame_scale=best["scales"].copy(),
                frame_r=best["frame_r"].copy(),
                frame_n=counts,
                elapsed_s=float(self.elapsed_s),
                settings=settings,
                uncertainties=self.uncertainties,
                message=self.message,
                error=self.error,
            )

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path) -> Path:
        """Write model, optimizer, epoch, history, best parameters and RNG state (atomic).

        While running, the write happens between two epochs."""
        with self._model_lock:
            best = None
            if self.best is not None:
                best = {k: (v if not isinstance(v, np.ndarray) else torch.as_tensor(v)) for k, v in self.best.items()}
            payload = {
                "format": CHECKPOINT_FORMAT,
                "epoch": self.epoch,
                "model": _clone_state(self.model),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "refined_groups": self.model.refined_groups(),
                "history": {k: list(v) for k, v in self.history.items()},
                "best": best,
                "epochs_since_best": self.epochs_since_best,
                "elapsed_s": self.elapsed_s,
                "rng": torch.get_rng_state(),
                "config": {"n_epochs": self.n_epochs, "optimizer": self.optimizer_name, "lr": self.lr,
                           "lrs": dict(self.lrs), "weight_decay": self.weight_decay,
                           "validation_frames": [int(v) for v in self.objective.validation_frames],
                           "patience": self.patience, "threads": self.threads, "seed": self.seed,
                           "uncertainties": self.compute_uncertainties, "name": self.name,
                           "loss": self.objective.loss},
            }
            buffer = io.BytesIO()
            torch.save(payload, buffer)
        return atomic_write_bytes(path, buffer.getvalue())

    @staticmethod
    def _read_checkpoint(path) -> dict:
        path = Path(path)
        if not path.is_file():
            raise RefinementError(f"{path}: no such checkpoint file")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RefinementError(f"{path}: not a readable refinement checkpoint ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise RefinementError(f"{path}: not an edwidgets refinement checkpoint")
        return payload

    def resume_from(self, path) -> "RefinementJob":
        """Load a checkpoint into this (idle or stopped) job; ``start()``/``run()`` then continues."""
        if self.state in (JobState.RUNNING, JobState.PAUSED, JobState.STOPPING):
            raise JobStateError(f"cannot load a checkpoint while the job is {self.state.value}")
        payload = self._read_checkpoint(path)
        with self._model_lock:
            try:
                self.model.load_state_dict(payload["model"])
                self.model.set_refined(**payload["refined_groups"])
                self.optimizer.load_state_dict(payload["optimizer"])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise RefinementError(f"{path}: the checkpoint does not fit this model/optimizer ({exc})") from None
            self.epoch = int(payload["epoch"])
            self.history = {k: list(payload["history"].get(k, [])) for k in _HISTORY_KEYS}
            best = payload["best"]
            if best is not None:
                best = {k: (v.numpy() if isinstance(v, torch.Tensor) and k != "state" else v) for k, v in best.items()}
            self.best = best
            self.epochs_since_best = int(payload["epochs_since_best"])
            self.elapsed_s = float(payload["elapsed_s"])
            torch.set_rng_state(payload["rng"])
            self._last = None
            self.state = JobState.STOPPED if self.epoch else JobState.IDLE
        return self

    @classmethod
    def from_checkpoint(cls, path, forward, model: RefinementModel, **overrides) -> "RefinementJob":
        """A job rebuilt from a checkpoint: ``model`` must be built like the original (same
        structure, anisotropy and thickness model); ``overrides`` change settings (e.g. n_epochs)."""
        config = dict(cls._read_checkpoint(path)["config"])
        config.update(overrides)
        job = cls(forward, model, **config)
        return job.resume_from(path)
