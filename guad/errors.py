"""Errors that a user can act on.

Every bad input the product meets (a corrupt file, a 2D image, an MRI, NaNs, a wrong label)
raises one of these, with the file (or row) and the problem named, so the CLI and the app can
show the message instead of a traceback and record it next to the scan that failed.
"""

from __future__ import annotations

from pathlib import Path


class GuadError(Exception):
    """Base class for errors whose message is meant for the user."""


class InputError(GuadError, ValueError):
    """A scan (file or DICOM folder) that cannot be used. Message: '<path>: <problem>'."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ImportDataError(GuadError, ValueError):
    """A manifest / labels / scores table that cannot be imported. Names the row."""
