"""Exception types: every user-facing error names what was wrong and where."""
from __future__ import annotations

from pathlib import Path


class EdwidgetsError(Exception):
    """Base class of all errors edwidgets raises on purpose."""


class InputFileError(EdwidgetsError, ValueError):
    """A file could not be used. The message names the file, the place (line or tag) and the problem."""

    def __init__(self, path: str | Path | None, problem: str, *, line: int | None = None, tag: str | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.line = line
        self.tag = tag
        where = str(self.path) if self.path is not None else "<input>"
        if line is not None:
            where += f", line {line}"
        if tag is not None:
            where += f", {tag}"
        super().__init__(f"{where}: {problem}")


class CrystalError(EdwidgetsError, ValueError):
    """An inconsistent or unusable crystal structure (unknown element, missing cell or symmetry...)."""


class ExperimentError(EdwidgetsError, ValueError):
    """Data and model do not fit together (mismatched cell, empty frames, NaN intensities...)."""
