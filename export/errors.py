"""The errors of the build-time tools (export, quantize, share, restamp, triton, release): all are `ExportError`s,
a kind of `training.errors.BuildError` (not of the runtime's `zoo.ZooError`)."""
from __future__ import annotations

from training.errors import BuildError


class ExportError(BuildError):
    """A build-time step cannot do what was asked; the message says why and what to do. Nothing was replaced."""
