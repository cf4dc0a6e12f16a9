"""A simulated refinement job that behaves like the real one, without any physics.

:class:`SimulatedJob` satisfies :class:`edwidgets.refine.events.RefinementJobLike`: a single worker
thread emits one :class:`Snapshot` per epoch (R curves decaying towards a floor, a thickness profile
converging to a "truth", atoms moving from their start to their truth positions), honours pause,
resume and stop between epochs, and computes plausible observed-vs-calculated spots per frame on
demand.  It is used to develop, demonstrate and test the widgets; it has no UI imports.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from edwidgets.errors import EdwidgetsError
from edwidgets.refine.events import AtomRecord, FramePattern, JobState, Snapshot, SnapshotBroadcaster
from edwidgets.ui.reference import ReferenceModel, format_with_su, fractional_to_cartesian_matrix


#: Parameter groups the simulated job "refines"; unticked groups stay frozen.
PARAMETER_GROUPS = ("positions", "adp", "thickness", "scale")

# An illustrative quartz-like asymmetric unit (P3_2 21); the numbers only need to look right.
_QUARTZ_CELL = (4.9134, 4.9134, 5.4052, 90.0, 90.0, 120.0)
_QUARTZ_TRUTH = (
    ("Si1", "Si", (0.4697, 0.0, 0.6667), 0.0066),
    ("O1", "O", (0.4135, 0.2669, 0.7858), 0.0135),
)
_WAVE_NUMBER_200KV = 39.8735  # 1/λ at 200 kV (Å⁻¹)
_TERMINAL = (JobState.FINISHED, JobState.STOPPED, JobState.FAILED)


class JobStateError(EdwidgetsError, RuntimeError):
    """An action that the job's current state does not allow (e.g. start while running)."""


@dataclass(frozen=True)
class SimulatedResult:
    """What :meth:`SimulatedJob.result` returns: the final (or partial) state of the refinement."""

    snapshot: Snapshot
    state: JobState
    epochs_done: int

    @property
    def atoms(self) -> tuple[AtomRecord, ...]:
        return self.snapshot.atoms

    def to_cif(self) -> str:
        """A minimal CIF of the refined asymmetric unit (with s.u. where known)."""
        snap = self.snapshot
        a, b, c, al, be, ga = snap.cell
        lines = [
            "data_edwidgets_simulated",
            f"_cell_length_a {a:.4f}",
            f"_cell_length_b {b:.4f}",
            f"_cell_length_c {c:.4f}",
            f"_cell_angle_alpha {al:.3f}",
            f"_cell_angle_beta {be:.3f}",
            f"_cell_angle_gamma {ga:.3f}",
            f"_symmetry_space_group_name_H-M '{snap.space_group}'",
            f"_refine_ls_wR_factor_all {snap.wr_all:.4f}",
            f"_refine_ls_R_factor_gt {snap.r_obs:.4f}",
            "loop_",
            "_atom_site_label",
            "_atom_site_type_symbol",
            "_atom_site_fract_x",
            "_atom_site_fract_y",
            "_atom_site_fract_z",
            "_atom_site_U_iso_or_equiv",
        ]
        for atom in snap.atoms:
            sus = atom.frac_su or (None, None, None)
            xyz = " ".join(format_with_su(v, s) for v, s in zip(atom.frac, sus))
            lines.append(f"{atom.label} {atom.element} {xyz} {format_with_su(atom.u_iso, atom.u_iso_su)}")
        return "\n".join(lines) + "\n"


class SimulatedJob(SnapshotBroadcaster):
    """A fake refinement with the real job's threading and event behaviour.

    Parameters
    ----------
    n_epochs, n_frames:
        Length of the run and number of frames (tilts evenly spread over ``tilt_range_deg``).
    epoch_seconds:
        Wall time per simulated epoch (the worker sleeps, interruptibly).
    learning_rate:
        Larger converges faster (the fraction of the remaining error removed per epoch is ~8×lr).
    fail_at_epoch:
        Raise a ``RuntimeError`` in the worker at that epoch (to test error display).
    validation:
        Whether a validation R (free set) is reported.
    """

    def __init__(
        self,
        n_epochs: int = 60,
        n_frames: int = 40,
        epoch_seconds: float = 0.15,
        learning_rate: float = 0.01,
        seed: int = 0,
        fail_at_epoch: int | None = None,
        validation: bool = True,
        tilt_range_deg: tuple[float, float] = (-35.0, 35.0),
    ) -> None:
        if n_epochs < 1 or n_frames < 1:
            raise EdwidgetsError(f"n_epochs and n_frames must be ≥ 1, got {n_epochs}, {n_frames}")
        self.n_epochs = int(n_epochs)
        self.learning_rate = float(learning_rate)
        self.refine_groups = {g: True for g in PARAMETER_GROUPS}
        self.epoch_seconds = float(epoch_seconds)
        self.fail_at_epoch = fail_at_epoch
        self.validation = validation
        self.parameter_groups = PARAMETER_GROUPS
        self.state = JobState.IDLE
        self.error: str | None = None

        rng = np.random.default_rng(seed)
        self._rng = rng
        self.cell = _QUARTZ_CELL
        self.space_group = "P 32 2 1"
        self._labels = [t[0] for t in _QUARTZ_TRUTH]
        self._elements = [t[1] for t in _QUARTZ_TRUTH]
        self._frac_true = np.array([t[2] for t in _QUARTZ_TRUTH], float)
        self._u_true = np.array([t[3] for t in _QUARTZ_TRUTH], float)
        self._frac_start = self._frac_true + rng.normal(0, 0.015, self._frac_true.shape)
        self._u_start = np.full_like(self._u_true, 0.012)

        self.frame_angle_deg = np.linspace(tilt_range_deg[0], tilt_range_deg[1], int(n_frames))
        # a wedge-like crystal: apparent thickness grows away from the untilted direction
        self._t_true = 900.0 / np.cos(np.radians(self.frame_angle_deg - 5.0)) + 60 * np.sin(
            np.radians(3 * self.frame_angle_deg)
        )
        self._t_grid = np.round((self._t_true + rng.normal(0, 80, n_frames)) / 50.0) * 50.0
        self._t_start = np.full(n_frames, float(np.median(self._t_grid)))
        self._scale_true = 1.0 + 0.1 * np.sin(np.radians(4 * self.frame_angle_deg))
        self._frame_offset = rng.uniform(0, 0.04, n_frames)

        # current parameters (guarded by _lock; the worker writes, frame_pattern reads)
        self._lock = threading.RLock()
        self._frac = self._frac_start.copy()
        self._u = self._u_start.copy()
        self._t = self._t_start.copy()
        self._scale = np.ones(n_frames)
        self._epoch = 0
        self._history: dict[str, list[float]] = {"epoch": [], "wR_all": [], "R_obs": [], "wR_val": []}
        self._elapsed = 0.0
        SnapshotBroadcaster.__init__(self)

        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edwidgets-simjob")
        self._future: Future | None = None
        self._stop_event = threading.Event()
        self._run_allowed = threading.Event()
        self._run_allowed.set()

    # ------------------------------------------------------------------ reference models
    @property
    def truth(self) -> ReferenceModel:
        """The structure and thickness profile the simulated refinement converges to."""
        return ReferenceModel(
            atoms=self._atom_records(self._frac_true, self._u_true),
            thickness=self._t_true.copy(),
            frame_angle_deg=self.frame_angle_deg.copy(),
            label="truth",
        )

    @property
    def initial(self) -> ReferenceModel:
        """The starting model, with the per-frame grid-search thicknesses."""
        return ReferenceModel(
            atoms=self._atom_records(self._frac_start, self._u_start),
            thickness=self._t_start.copy(),
            frame_angle_deg=self.frame_angle_deg.copy(),
            grid_thickness=self._t_grid.copy(),
            label="start",
        )

    # ------------------------------------------------------------------ control
    def configure(self, settings: dict) -> None:
        """Take dashboard settings: ``n_epochs``, ``learning_rate``, ``refine`` ({group: bool})."""
        with self._lock:
            if "n_epochs" in settings:
                n = int(settings["n_epochs"])
                if n < 1:
                    raise EdwidgetsError(f"n_epochs must be ≥ 1, got {n}")
                self.n_epochs = n
            if "learning_rate" in settings:
                lr = float(settings["learning_rate"])
                if not lr > 0:
                    raise EdwidgetsError(f"learning_rate must be > 0, got {lr}")
                self.learning_rate = lr
            if "refine" in settings:
                unknown = set(settings["refine"]) - set(PARAMETER_GROUPS)
                if unknown:
                    raise EdwidgetsError(f"unknown parameter groups {sorted(unknown)}; known: {PARAMETER_GROUPS}")
                self.refine_groups.update({k: bool(v) for k, v in settings["refine"].items()})

    def start(self) -> None:
        """Start the worker; after a stop it resumes from the last completed epoch."""
        with self._lock:
            if self.state in (JobState.RUNNING, JobState.PAUSED, JobState.STOPPING):
                raise JobStateError(f"cannot start: the job is {self.state.value}")
            if self.state is JobState.FAILED:
                raise JobStateError(f"cannot start: the job failed ({self.error})")
            if self._epoch >= self.n_epochs:
                raise JobStateError(
                    f"cannot start: all {self.n_epochs} epochs are done; raise n_epochs to continue"
                )
            self._stop_event.clear()
            self._run_allowed.set()
            self.state = JobState.RUNNING
            self._future = self._executor.submit(self._run)

    def pause(self) -> None:
        with self._lock:
            if self.state is JobState.RUNNING:
                self._run_allowed.clear()

    def resume(self) -> None:
        with self._lock:
            if self.state in (JobState.RUNNING, JobState.PAUSED):
                self._run_allowed.set()

    def stop(self) -> None:
        """Ask the worker to stop after the current epoch; the result stays consistent."""
        with self._lock:
            if self.state in (JobState.RUNNING, JobState.PAUSED):
                self.state = JobState.STOPPING
                self._stop_event.set()
                self._run_allowed.set()

    def done(self) -> bool:
        return self.state in _TERMINAL

    def result(self, timeout: float | None = None) -> SimulatedResult:
        """Wait for the worker (raises ``TimeoutError``) and return the final or partial result.

        Re-raises the worker's exception if it failed.
        """
        future = self._future
        if future is None:
            raise JobStateError("the job was never started")
        future.result(timeout=timeout)
        snap = self._latest if self._latest is not None else self._snapshot(self.state)
        return SimulatedResult(snapshot=snap, state=self.state, epochs_done=self._epoch)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        try:
            while True:
                if not self._run_allowed.is_set() and not self._stop_event.is_set():
                    with self._lock:
                        self.state = JobState.PAUSED
                    self._emit(self._snapshot(JobState.PAUSED, message="paused"))
                    self._run_allowed.wait()
                    with self._lock:
                        if not self._stop_event.is_set():
                            self.state = JobState.RUNNING
                    if not self._stop_event.is_set():
                        self._emit(self._snapshot(JobState.RUNNING, message="resumed"))
                if self._stop_event.is_set() or self._epoch >= self.n_epochs:
                    break
                tic = time.perf_counter()
                if self._stop_event.wait(self.epoch_seconds):
                    break
                self._step()
                dt = time.perf_counter() - tic
                self._elapsed += dt
                self._emit(self._snapshot(self.state, seconds_per_epoch=dt))
            with self._lock:
                self.state = JobState.STOPPED if self._stop_event.is_set() and self._epoch < self.n_epochs else JobState.FINISHED
            self._emit(self._snapshot(self.state, message=self.state.value))
        except BaseException as exc:  # noqa: BLE001 - reported to the UI, then re-raised to the future
            with self._lock:
                self.state = JobState.FAILED
                self.error = f"{type(exc).__name__}: {exc}"
            self._emit(self._snapshot(JobState.FAILED, message="failed", error=self.error))
            raise

    def _step(self) -> None:
        with self._lock:
            self._epoch += 1
            if self.fail_at_epoch is not None and self._epoch >= self.fail_at_epoch:
                raise RuntimeError(f"simulated failure in epoch {self._epoch} (NaN in the loss)")
            rate = min(0.9, 8.0 * self.learning_rate)
            noise = 0.05 * rate
            rng = self._rng
            groups = self.refine_groups
            if groups.get("positions", True):
                self._frac += rate * (self._frac_true - self._frac) + noise * rng.normal(0, 1e-3, self._frac.shape)
            if groups.get("adp", True):
                self._u += rate * (self._u_true - self._u)
            if groups.get("thickness", True):
                self._t += rate * (self._t_true - self._t) + noise * rng.normal(0, 5.0, self._t.shape)
            if groups.get("scale", True):
                self._scale += rate * (self._scale_true - self._scale)
            err = self._relative_error()
            wr = 0.085 + 0.32 * err + rng.normal(0, 0.002)
            self._history["epoch"].append(float(self._epoch))
            self._history["wR_all"].append(wr)
            self._history["R_obs"].append(0.86 * wr - 0.004 + rng.normal(0, 0.0015))
            self._history["wR_val"].append(1.06 * wr + 0.012 + rng.normal(0, 0.003) if self.validation else np.nan)

    def _relative_error(self) -> float:
        def rel(cur, start, true):
            denom = float(np.mean(np.abs(start - true))) or 1.0
            return float(np.mean(np.abs(cur - true))) / denom

        return float(
            np.clip(
                0.5 * rel(self._frac, self._frac_start, self._frac_true)
                + 0.2 * rel(self._u, self._u_start, self._u_true)
                + 0.3 * rel(self._t, self._t_start, self._t_true),
                0.0,
                2.0,
            )
        )

    def _atom_records(self, frac: np.ndarray, u: np.ndarray, with_su: bool = False) -> tuple[AtomRecord, ...]:
        records = []
        for i, (label, element) in enumerate(zip(self._labels, self._elements)):
            su = (4e-4, 4e-4, 5e-4) if with_su else None
            records.append(
                AtomRecord(
                    label=label,
                    element=element,
                    frac=tuple(float(v) for v in frac[i]),
                    u_iso=float(u[i]),
                    frac_su=su,
                    u_iso_su=6e-4 if with_su else None,
                )
            )
        return tuple(records)

    def _snapshot(self, state: JobState, seconds_per_epoch: float = float("nan"), message: str = "", error: str | None = None) -> Snapshot:
        with self._lock:
            hist = {k: np.asarray(v, float).copy() for k, v in self._history.items()}
            wr = float(hist["wR_all"][-1]) if len(hist["wR_all"]) else float("nan")
            r_obs = float(hist["R_obs"][-1]) if len(hist["R_obs"]) else float("nan")
            wr_val = float(hist["wR_val"][-1]) if (self.validation and len(hist["wR_val"])) else None
            rel_t = np.abs(self._t - self._t_true) / self._t_true
            err = self._relative_error()
            frame_r = 0.06 + self._frame_offset + 0.6 * rel_t + 0.1 * err
            previous = self._latest
            atoms = self._atom_records(self._frac, self._u, with_su=self._epoch >= 5)
            shifts = {}
            if previous is not None and previous.atoms:
                prev_frac = np.array([a.frac for a in previous.atoms])
                prev_u = np.array([a.u_iso for a in previous.atoms])
                shifts = {
                    "positions": float(np.max(np.abs(self._frac - prev_frac))),
                    "adp": float(np.max(np.abs(self._u - prev_u))),
                    "thickness": float(np.max(np.abs(self._t - previous.thickness))),
                }
            return Snapshot(
                epoch=self._epoch,
                n_epochs=self.n_epochs,
                state=state,
                wr_all=wr,
                r_obs=r_obs,
                n_obs=1800,
                n_all=2400,
                wr_validation=wr_val,
                history=hist,
                frame_angle_deg=self.frame_angle_deg.copy(),
                thickness=self._t.copy(),
                frame_r=frame_r,
                frame_scale=self._scale.copy(),
                atoms=atoms,
                cell=self.cell,
                space_group=self.space_group,
                max_shift=shifts,
                seconds_per_epoch=seconds_per_epoch,
                elapsed_s=self._elapsed,
                message=message,
                error=error,
            )

    # ------------------------------------------------------------------ per-frame patterns
    def frame_pattern(self, frame: int) -> FramePattern:
        """Observed vs calculated spots of one frame (kinematic-looking, deterministic per frame)."""
        n_frames = len(self.frame_angle_deg)
        if not 0 <= int(frame) < n_frames:
            raise EdwidgetsError(f"frame {frame} out of range 0..{n_frames - 1}")
        frame = int(frame)
        with self._lock:
            t_cur = float(self._t[frame])
            err = self._relative_error()
            scale = float(self._scale[frame])
            r_frame_offset = float(self._frame_offset[frame])
        angle = float(self.frame_angle_deg[frame])
        t_true = float(self._t_true[frame])
        orientation = _rotation_y(np.radians(angle)) @ _rotation_x(np.radians(12.0))
        recip = np.linalg.inv(fractional_to_cartesian_matrix(self.cell)).T  # columns a*, b*, c*
        rng_idx = np.arange(-6, 7)
        hkl = np.array(np.meshgrid(rng_idx, rng_idx, rng_idx, indexing="ij")).reshape(3, -1).T
        hkl = hkl[np.any(hkl != 0, axis=1)]
        g = (orientation @ recip @ hkl.T).T
        g_len = np.linalg.norm(g, axis=1)
        k = _WAVE_NUMBER_200KV
        s = -(2 * k * g[:, 2] + g_len**2) / (2 * k)
        keep = (g_len <= 1.6) & (np.abs(s) <= 0.02)
        hkl, g, g_len, s = hkl[keep], g[keep], g_len[keep], s[keep]

        ah = np.abs(hkl)
        key = (ah[:, 0] * 73856093) ^ (ah[:, 1] * 19349663) ^ (ah[:, 2] * 83492791)
        f2 = (0.15 + (key % 1000) / 1000.0) * np.exp(-1.5 * g_len**2)
        wobble = ((key // 1000) % 1000) / 1000.0 - 0.5

        def shape(t):
            return (t / 1000.0) ** 2 * np.sinc(t * s) ** 2

        noise_rng = np.random.default_rng(1000 + frame)
        i_obs = 1e4 * f2 * shape(t_true)
        sigma = 0.03 * i_obs + 2.0
        i_obs = i_obs + noise_rng.normal(0, 1, len(i_obs)) * sigma
        i_calc = 1e4 * f2 * (1 + 0.8 * err * wobble) * shape(t_cur) * scale
        denom = float(np.sum(i_calc**2)) or 1.0
        i_calc = i_calc * float(np.sum(i_obs * i_calc)) / denom
        r_frame = float(np.sum(np.abs(i_obs - i_calc)) / max(np.sum(np.abs(i_obs)), 1e-12)) + r_frame_offset
        return FramePattern(
            frame=frame,
            h=hkl[:, 0].copy(),
            k=hkl[:, 1].copy(),
            l=hkl[:, 2].copy(),
            x=g[:, 0].copy(),
            y=g[:, 1].copy(),
            i_obs=i_obs,
            sigma=sigma,
            i_calc=i_calc,
            r_frame=r_frame,
            thickness=t_cur,
            angle_deg=angle,
            orientation=orientation,
        )

    def close(self) -> None:
        """Stop the worker and release its thread."""
        self.stop()
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"SimulatedJob(state={self.state.value}, epoch={self._epoch}/{self.n_epochs})"


def _rotation_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotation_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
