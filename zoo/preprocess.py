"""The one place where images become model inputs.

Everything a model sees goes through `load_image` (any accepted input -> RGB PIL image) and
`fit_to_input` (the resize policy -> uint8 HxWx3 at the model's resolution). Normalisation happens
inside the ONNX graph, so the arrays produced here are the graph's inputs as they are. Training-time
evaluation calls the same functions, so train and serve cannot drift apart.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

ImageInput = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]

#: Largest image, in pixels, that is decoded; larger headers are refused before decoding.
MAX_PIXELS = int(os.environ.get("ZOO_MAX_PIXELS", 50_000_000))
#: Largest encoded file accepted, in bytes.
MAX_FILE_BYTES = int(os.environ.get("ZOO_MAX_FILE_BYTES", 50 * 1024 * 1024))
#: The only decoders Pillow may use: no EPS/PDF (Ghostscript), no exotic formats (camera MPO files open as JPEG).
FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

ACCEPTED = (
    "a path to an image file (JPEG, PNG, GIF, BMP, WebP, TIFF), its bytes, a PIL image, "
    "or a numpy array (uint8 in 0..255 or float in [0, 1]) of shape HxW, HxWx3 or HxWx4"
)
RESIZE_POLICIES = ("center-crop", "stretch")


#: How many times the model's input size a JPEG's draft decoding keeps on each side, at least. At 2 (or 4)
#: the 32x32 cnn's probabilities moved by up to 0.10 (0.046) on Caltech photos drafted at 1/2; at 8 by at
#: most 0.006 there and on 12-megapixel photos (tests/test_draft_decoding.py), which still decode at 1/4-1/8.
DRAFT_MARGIN = 8

def load_image(image: ImageInput, fit: tuple[int, int] | None = None) -> Image.Image:
    """Return `image` as an RGB PIL image, or raise ImageError saying what is wrong.

    `fit`: the (height, width) the image will be resized to. A JPEG is then decoded at the smallest scale
    (1/2 to 1/8, in its DCT) that still covers DRAFT_MARGIN times that size on each side: a phone photo
    decodes several times faster, and the resize that follows sees as many pixels as it can use.
    """
    if isinstance(image, Image.Image):
        return _decoded_rgb(image, "the given PIL image")
    if isinstance(image, np.ndarray):
        return Image.fromarray(_array_to_uint8(image))
    if isinstance(image, (bytes, bytearray)):
        if not image:
            raise ImageError(f"empty bytes given; expected {ACCEPTED}.")
        return _decode(bytes(image), "the given bytes object", fit)
    if isinstance(image, (str, os.PathLike)):
        return _decode_file(image, fit)
    raise ImageError(f"unsupported input of type {type(image).__name__}; expected {ACCEPTED}.")


def fit_to_input(image: Image.Image, height: int, width: int, policy: str = "center-crop") -> np.ndarray:
    """Resize an RGB image to the model's (height, width) and return it as uint8 HxWx3.

    `center-crop` scales the image so that it covers the target (antialiased bilinear) and cuts the
    centre, keeping the aspect ratio of what is seen; `stretch` resizes to the target directly.
    """
    if policy not in RESIZE_POLICIES:
        raise ImageError(f"unknown resize policy {policy!r}; expected one of {RESIZE_POLICIES}.")
    if image.size != (width, height):
        if policy == "center-crop":
            image = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
        else:
            image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def prepare(image: ImageInput, height: int, width: int, policy: str = "center-crop") -> np.ndarray:
    """`load_image` then `fit_to_input`: any accepted input -> uint8 HxWx3 model input."""
    return fit_to_input(load_image(image, (height, width)), height, width, policy)


def _decode_file(name: str | os.PathLike, fit: tuple[int, int] | None = None) -> Image.Image:
    shown = _shorten(os.fspath(name))
    if not shown:  # Path("") is the current directory
        raise ImageError(f"an empty path was given; expected {ACCEPTED}.")
    try:
        path = Path(name)
        if not path.exists():
            raise ImageError(f"{shown} does not exist; expected {ACCEPTED}.")
        if path.is_dir():
            raise ImageError(f"{shown} is a directory, not an image file.")
        if not path.is_file():  # a FIFO or device could block or never end
            raise ImageError(f"{shown} is not a regular file; give an image file.")
        size = path.stat().st_size
        if size == 0:
            raise ImageError(f"{shown} is an empty file (0 bytes).")
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{shown} is {size} bytes, over the limit of {MAX_FILE_BYTES} (ZOO_MAX_FILE_BYTES).")
        data = path.read_bytes()
    except ImageError:
        raise
    except (OSError, ValueError) as exc:  # name too long, embedded NUL, permission denied...
        reason = getattr(exc, "strerror", None) or exc  # strerror: without the (possibly huge) name again
        raise ImageError(f"{shown} cannot be read as a file ({reason}); expected {ACCEPTED}.") from None
    return _decode(data, shown, fit)


def _shorten(text: str, limit: int = 200) -> str:
    """A file name short enough to quote in a message."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _decode(data: bytes, what: str, fit: tuple[int, int] | None = None) -> Image.Image:
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{what} is over the limit of {MAX_FILE_BYTES} bytes (ZOO_MAX_FILE_BYTES).")
    try:
        opened = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:  # Pillow's own, larger limit, met while reading the header
        raise ImageError(f"{what} is refused as a decompression bomb ({exc}); zoo accepts up to {MAX_PIXELS} "
                         "pixels (ZOO_MAX_PIXELS).") from None
    except UnidentifiedImageError:
        raise ImageError(f"{what} is not a readable image; expected {ACCEPTED}.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{what} is damaged or truncated and cannot be decoded ({exc}).") from None
    with opened:
        return _decoded_rgb(opened, what, first_frame=True, fit=fit)


def _decoded_rgb(image: Image.Image, what: str, first_frame: bool = False,
                 fit: tuple[int, int] | None = None) -> Image.Image:
    """Refuse a bomb from its header, then decode (the first frame, if asked; a JPEG at its draft scale for
    `fit`) and convert to RGB."""
    width, height = image.size  # from the header; nothing decoded yet
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{what} claims {width}x{height} pixels, over the limit of {MAX_PIXELS} "
            "(a decompression bomb?); raise ZOO_MAX_PIXELS to accept larger images."
        )
    try:
        if first_frame:
            image.seek(0)
        if fit and image.format == "JPEG":
            side = DRAFT_MARGIN * max(fit)  # either side may end up vertical once EXIF orientation is applied
            image.draft(None, (side, side))
        image.load()
        return _to_rgb(image)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's ways of saying "bad data"
        raise ImageError(f"{what} is damaged or truncated and cannot be decoded ({exc}).") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Honour EXIF orientation and convert any mode (L, LA, P, RGBA, CMYK, 1, I;16, F...) to RGB."""
    if image.width == 0 or image.height == 0:
        raise ImageError(f"the image has no pixels ({image.width}x{image.height}).")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        pass
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageError("the image holds NaN or infinite values.")
        # 16-bit modes span 0..65535 even when dark; 32-bit "I" and "F" have no fixed range.
        sixteen_bit = image.mode.startswith("I;16") or (image.mode == "I" and values.max() > 255)
        top = 65535.0 if sixteen_bit else 255.0
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels are shown on white, as a viewer would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)  # subclasses (np.matrix, masked arrays) behave as plain arrays
    if array.dtype == object or np.iscomplexobj(array):
        raise ImageError(f"arrays of dtype {array.dtype} are not images; expected {ACCEPTED}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"an array of shape {array.shape} is not an image; expected {ACCEPTED}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"an array of shape {array.shape} has no pixels.")
    if array.shape[0] * array.shape[1] > MAX_PIXELS:
        raise ImageError(f"an array of shape {array.shape} is over the limit of {MAX_PIXELS} pixels.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("the array holds NaN or infinite values.")
        if array.min() < 0.0 or array.max() > 1.0:
            raise ImageError(
                f"float arrays must lie in [0, 1] (this one spans {array.min():g}..{array.max():g}); "
                "pass uint8 for 0..255 values."
            )
        array = np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)  # float16/32 would round early
    elif np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ImageError(f"integer arrays must lie in 0..255 (this one spans {array.min()}..{array.max()}).")
        array = array.astype(np.uint8)
    else:
        raise ImageError(f"arrays of dtype {array.dtype} are not supported; expected {ACCEPTED}.")
    if array.ndim == 3 and array.shape[2] == 4:
        return np.asarray(_to_rgb(Image.fromarray(np.ascontiguousarray(array), "RGBA")))
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)
