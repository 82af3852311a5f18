"""The base of the build-time errors (training, export).

They are not `zoo.ZooError`s: a user's `except zoo.ZooError` catches the runtime's errors only, never a failed
training run or export.
"""
from __future__ import annotations


class BuildError(Exception):
    """A build-time step (training, export, quantization, packaging) cannot do what was asked; the message says
    why and what to do."""


class TrainingError(BuildError):
    """Training cannot run as asked (data, checkpoint or options)."""
