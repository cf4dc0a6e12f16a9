"""A tqdm progress bar that subscribes to a job's snapshots (used by the command line)."""
from __future__ import annotations

from tqdm.auto import tqdm

from .events import JobState, Snapshot


class TqdmProgress:
    """Subscribe a tqdm bar to ``job``; the postfix shows wR_all and R_obs (percent).

    Call :meth:`close` when done (it unsubscribes)."""

    def __init__(self, job, *, desc: str = "refining", **tqdm_kwargs):
        self.bar = tqdm(total=job.n_epochs, desc=desc, unit="epoch", initial=job.epoch, **tqdm_kwargs)
        self._unsubscribe = job.subscribe(self)

    def __call__(self, snap: Snapshot) -> None:
        if snap.n_epochs != self.bar.total:
            self.bar.total = snap.n_epochs
        if snap.epoch > self.bar.n:
            self.bar.update(snap.epoch - self.bar.n)
        postfix = {"wR_all": f"{100 * snap.wr_all:.2f}%", "R_obs": f"{100 * snap.r_obs:.2f}%"}
        if snap.wr_validation is not None:
            postfix["wR_val"] = f"{100 * snap.wr_validation:.2f}%"
        if snap.state not in (JobState.RUNNING,):
            postfix["state"] = snap.state.value
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self._unsubscribe()
        self.bar.close()
