"""The errors of the build-time tools (export, quantize, share, restamp, triton): all are `ExportError`s."""
from __future__ import annotations

from zoo.errors import ZooError


class ExportError(ZooError):
    """A build-time step cannot do what was asked; the message says why and what to do. Nothing was replaced."""
