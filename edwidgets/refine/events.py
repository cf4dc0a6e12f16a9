"""Plain snapshot events emitted by a refinement job, one per epoch.

Consumers (CLI/tqdm, reports, widgets) subscribe to these.  A snapshot holds only detached
NumPy arrays and Python scalars, never live tensors, so it can cross threads safely and the
UI never touches the model.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol

import numpy as np

_log = logging.getLogger(__name__)


class JobState(str, Enum):
    """Life cycle of a refinement job."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"  # ran all epochs or converged
    STOPPED = "stopped"  # stopped by the user; the result is consistent and resumable
    FAILED = "failed"  # the worker raised; ``Snapshot.error`` / ``job.error`` say why


@dataclass(frozen=True)
class AtomRecord:
    """One asymmetric-unit site as the UI shows it (fractional coordinates, U in Å²)."""

    label: str
    element: str
    frac: tuple[float, float, float]
    u_iso: float  # equivalent isotropic U (Å²)
    u_aniso: tuple[float, float, float, float, float, float] | None = None  # U11 U22 U33 U12 U13 U23
    frac_su: tuple[float, float, float] | None = None  # standard uncertainties when known
    u_iso_su: float | None = None


def atom_records(crystal, su=None) -> tuple[AtomRecord, ...]:
    """The asymmetric-unit sites of a :class:`edwidgets.crystal.Crystal` as the UI shows them;
    ``su`` (an :class:`~edwidgets.refine.uncertainties.Uncertainties`) adds their s.u."""
    out = []
    for i, s in enumerate(crystal.sites):
        frac_su = u_su = None
        if su is not None:
            frac_su = tuple(float(v) for v in su.site_frac_su[i])
            u_su = float(su.site_u_iso_su[i])
        out.append(AtomRecord(label=s.label, element=s.element, frac=tuple(float(v) for v in s.frac),
                              u_iso=float(s.u_iso), u_aniso=None if s.u_aniso is None else tuple(float(v) for v in s.u_aniso),
                              frac_su=frac_su, u_iso_su=u_su))
    return tuple(out)


@dataclass(frozen=True)
class Snapshot:
    """State of a refinement after one epoch.

    Arrays are per frame (length ``n_frames``) unless named otherwise.  ``history`` keys hold
    the full R-value curves so far, so a consumer that subscribes late can draw everything.
    """

    epoch: int
    n_epochs: int
    state: JobState
    # residuals of this epoch (fractions, not percent)
    wr_all: float
    r_obs: float
    n_obs: int
    n_all: int
    wr_validation: float | None
    # whole curves so far: {"epoch": [...], "wR_all": [...], "R_obs": [...], "wR_val": [...]}
    history: dict[str, np.ndarray]
    # per frame
    frame_angle_deg: np.ndarray  # tilt angle of each frame (deg)
    thickness: np.ndarray  # current model thickness per frame (Å)
    frame_r: np.ndarray  # per-frame R (fraction)
    frame_scale: np.ndarray
    # structure
    atoms: tuple[AtomRecord, ...]
    cell: tuple[float, float, float, float, float, float]  # a b c alpha beta gamma (Å, deg)
    space_group: str
    # parameter vector shift of this epoch (max |Δ| per group, e.g. {"positions": 1e-3})
    max_shift: dict[str, float] = field(default_factory=dict)
    # timing
    seconds_per_epoch: float = float("nan")
    elapsed_s: float = 0.0
    message: str = ""
    error: str | None = None


@dataclass(frozen=True)
class FramePattern:
    """Observed vs calculated spots of one frame, computed on demand for the pattern panel."""

    frame: int
    h: np.ndarray
    k: np.ndarray
    l: np.ndarray
    x: np.ndarray  # detector-plane coordinates (Å⁻¹) of each reflection at the frame centre
    y: np.ndarray
    i_obs: np.ndarray
    sigma: np.ndarray
    i_calc: np.ndarray  # already scaled to the observations
    r_frame: float
    thickness: float
    angle_deg: float
    orientation: np.ndarray  # 3x3 rotation matrix


Listener = Callable[[Snapshot], None]


class RefinementJobLike(Protocol):
    """What the widgets need from a job (the real job and the test fakes both satisfy it)."""

    state: JobState

    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...
    def subscribe(self, listener: Listener) -> Callable[[], None]: ...  # returns unsubscribe
    def latest(self) -> Snapshot | None: ...
    def frame_pattern(self, frame: int) -> FramePattern: ...
    def result(self, timeout: float | None = None): ...


class SnapshotBroadcaster:
    """Keeps the latest snapshot and hands each new one to every subscriber.

    Shared by the real refinement job and the UI's simulated job. Listeners run on the worker
    thread; one that raises is logged and skipped, so a broken consumer never stops a refinement.
    """

    def __init__(self) -> None:
        self._latest: Snapshot | None = None
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def latest(self) -> Snapshot | None:
        return self._latest

    def _emit(self, snap: Snapshot) -> None:
        self._latest = snap
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(snap)
            except Exception:  # a broken consumer must not kill the refinement
                _log.exception("snapshot listener %r raised", listener)
