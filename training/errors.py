"""The base of the build-time errors (training, export).

They are not `zoo.ZooError`s: a user's `except zoo.ZooError` catches the runtime's errors only, never a failed
training run or export.
"""
from __future__ import annotations


class BuildError(Exception):
    """A build-time step (training, export, quantization, packaging) cannot do what was asked; the message says
    why and what to do."""


class TrainingError(BuildError, ValueError):
    """Training cannot run as asked: a data set, checkpoint or option that does not fit."""


class TrainingFileError(BuildError, FileNotFoundError):
    """A file or folder training needs is not there; the message says which and how to make it."""
