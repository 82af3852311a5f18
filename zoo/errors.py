"""Every error the zoo raises derives from ZooError and says what was wrong and what is accepted."""
from __future__ import annotations


class ZooError(Exception):
    """Base class of every error raised by the zoo."""


class UnknownModelError(ZooError, KeyError):
    """The requested model name is not in the zoo."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelFileError(ZooError):
    """A shipped model file is missing, truncated, tampered with or unreadable."""


class ImageError(ZooError, ValueError):
    """An input image is unreadable, empty, too large or of an unsupported type or shape."""


class DeviceError(ZooError, RuntimeError):
    """The requested execution device is not usable on this machine."""
