"""Run a job to the end from a script or a regression notebook (nbval)."""
from __future__ import annotations

import logging
import sys

from edwidgets.refine.events import JobState, RefinementJobLike

log = logging.getLogger(__name__)


def run_blocking(job: RefinementJobLike, dashboard=None, poll_s: float = 0.2, timeout: float | None = None):
    """Start ``job`` (unless already started), wait for it and return ``job.result()``.

    Ctrl-C / the kernel's interrupt (which only reaches the main thread) stops the worker cleanly and
    returns the partial, consistent result instead of leaving an orphaned thread.  With a
    ``dashboard`` its last snapshot is rendered before returning (for notebooks whose output must be
    final when the cell ends).  ``timeout`` (s) stops the job and returns what it has.
    """
    import time

    if job.state is JobState.IDLE or job.state is JobState.STOPPED:
        if dashboard is not None:
            dashboard.start()
            if job.state is JobState.IDLE:  # start failed; the dashboard shows why
                raise RuntimeError(dashboard.status.error_text or "the job did not start")
        else:
            job.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                result = job.result(timeout=poll_s)
                break
            except TimeoutError:
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("run_blocking: timeout after %.1f s, stopping the job", timeout)
                    job.stop()
                    result = job.result()
                    break
    except KeyboardInterrupt:
        print("Interrupted: stopping the refinement after the current epoch…", file=sys.stderr)
        job.stop()
        result = job.result()
    finally:
        if dashboard is not None:
            dashboard.flush()
    return result


__all__ = ["run_blocking"]
