"""The one place where images become model inputs.

Everything a model sees goes through `load_image` (any accepted input -> RGB PIL image) and
`fit_to_input` (the resize policy -> uint8 HxWx3 at the model's resolution). Normalisation happens
inside the ONNX graph, so the arrays produced here are the graph's inputs as they are. Training-time
evaluation calls the same functions, so train and serve cannot drift apart.
"""
from __future__ import annotations

import io
import os
import re
import zlib
from pathlib import Path
from typing import Callable, Union

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
    if type(image) is np.ndarray and image.dtype == np.uint8 and image.shape == (height, width, 3):
        return image  # already a model input: what the conversions below would return, without their copies
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
        width, height = opened.size
        if opened.format == "JPEG" and WALK_PIXELS < width * height <= MAX_PIXELS:  # over MAX_PIXELS: refused below
            _refuse_if_short(data, what, lambda: _jpeg_shortfall(data)[0])
        return _decoded_rgb(opened, what, first_frame=True, fit=fit,
                            loaded=lambda image: _check_data_filled(image, data, fit, what))


def claimed_pixels(data: bytes) -> int:
    """The pixels (width x height) an encoded image's header claims, read without decoding it: what decoding it
    may cost. 0 for data that no accepted decoder opens (decoding refuses it at once). JPEG and PNG, the
    common uploads, are read directly (a few microseconds); other formats through Pillow's header parsers."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        frame = _jpeg_frame_size(data)
        if frame is not None:
            return frame
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as opened:
            return opened.size[0] * opened.size[1]
    except Exception:  # noqa: BLE001 - unreadable data: `load_image` says why
        return 0


def _jpeg_frame_size(data: bytes) -> int | None:
    """width x height from a JPEG's frame header (SOF0-SOF15), following the marker chain; None if not found."""
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[at + 5:at + 7], "big") * int.from_bytes(data[at + 7:at + 9], "big")
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame
            return None
        at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


#: A JPEG claiming more pixels than this is checked against its data before it is decoded, so that a header
#: that lies by millions of pixels costs no decoding; smaller ones are decoded, then checked.
WALK_PIXELS = 1 << 20


def _truncated(what: str, detail: str) -> ImageError:
    return ImageError(f"{what} is damaged or truncated: its data does not match its header ({detail}).")


def _refuse_if_short(data: bytes, what: str, shortfall: Callable[[], str | None]) -> None:
    try:
        detail = shortfall()
    except (IndexError, KeyError, ValueError, zlib.error):  # a structure not followed here: the decoder judges
        return
    if detail:
        raise _truncated(what, detail)


def _check_data_filled(image: Image.Image, data: bytes, fit: tuple[int, int] | None, what: str) -> None:
    """Refuse a decoded JPEG or PNG whose pixels Pillow made up where the data ended.

    Pillow's decoders fill what a file lacks instead of failing: libjpeg decodes the blocks after the data's
    end as exactly 128 grey, and a PNG whose zlib stream ends early keeps the rows after it at 0. A header
    edited to claim more pixels, or a file cut and given a new end marker, would otherwise be predicted on
    made-up pixels. Only an image whose last row is such a fill (or an interlaced PNG, whose missing rows
    may lie anywhere) is looked at closer, so valid images cost a glance at one row.
    """
    if getattr(image, "_ended", False):  # Pillow's JPEG reader gave a cut file an end (LOAD_TRUNCATED_IMAGES)
        raise ImageError(f"{what} is damaged or truncated: the file ends before its end-of-image marker.")
    if image.format not in ("JPEG", "PNG") or not image.height or not image.width:
        return
    corner = image.getpixel((0, image.height - 1))  # a glance first: most rows end the question here
    corner = corner if isinstance(corner, tuple) else (corner,)
    if not image.info.get("interlace") and any(value != (0 if image.format == "PNG" else 128) for value in corner):
        return
    last_row = image.crop((0, image.height - 1, image.width, image.height)).getextrema()
    bands = last_row if isinstance(last_row[0], tuple) else (last_row,)
    if image.format == "PNG":
        if image.info.get("interlace") or all(band == (0, 0) for band in bands):
            _refuse_if_short(data, what, lambda: _png_shortfall(data))
    elif image.mode in ("RGB", "L") and all(band == (128, 128) for band in bands):
        _refuse_if_short(data, what, lambda: _jpeg_filled(image, data, fit))


def _jpeg_filled(image: Image.Image, data: bytes, fit: tuple[int, int] | None) -> str | None:
    """Whether a decoded JPEG ending in 128 grey lacks data: its scans' bounds (restarts counted), else a probe."""
    detail, scan_end = _jpeg_shortfall(data, restarts=True)
    return detail or _jpeg_padded(image, data, scan_end, fit)


#: Bytes that decode to blocks other than grey when libjpeg is still reading the last scan (no 0xFF: no marker).
_PROBE = bytes(range(1, 255)) * 16


def _jpeg_padded(image: Image.Image, data: bytes, scan_end: int | None, fit: tuple[int, int] | None) -> str | None:
    """Whether libjpeg decoded `image` (ending in 128 grey) past the end of its last scan's data, which ends
    at `scan_end` (`_jpeg_shortfall`).

    The file is decoded once more with bytes slipped in where the last scan ends: libjpeg skips them after
    a complete scan (the same pixels) and decodes them as blocks into an incomplete one (other pixels).
    """
    if scan_end is None:
        return None
    try:
        with Image.open(io.BytesIO(data[:scan_end] + _PROBE + data[scan_end:]), formats=("JPEG",)) as probe:
            _draft(probe, fit)
            probe.load()
            same = probe.size == image.size and probe.mode == image.mode and probe.tobytes() == image.tobytes()
    except (OSError, SyntaxError, ValueError, EOFError):
        same = False
    return None if same else f"its {image.width}x{image.height} pixels end in blocks made up where data is missing"


def _draft(image: Image.Image, fit: tuple[int, int] | None) -> None:
    """Decode a JPEG at its draft scale for `fit` (see `load_image`)."""
    if fit and image.format == "JPEG":
        side = DRAFT_MARGIN * max(fit)  # either side may end up vertical once EXIF orientation is applied
        image.draft(None, (side, side))


#: A JPEG marker that ends entropy-coded data: 0xFF followed by anything but a stuffed 0x00 or RST0-7.
_JPEG_MARKER = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")
_JPEG_RESTART = re.compile(rb"\xff[\xd0-\xd7]")


def _huffman_tables(segment: bytes) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """Each table of a DHT segment: (class, id) -> (codes of each length 1..16, symbols in code order)."""
    tables, at = {}, 0
    while at < len(segment):
        counts = segment[at + 1:at + 17]
        if len(counts) < 16:
            raise ValueError("short DHT segment")
        tables[(segment[at] >> 4, segment[at] & 15)] = (counts, segment[at + 17:at + 17 + sum(counts)])
        at += 17 + sum(counts)
    return tables


def _cheapest_code(table: tuple[bytes, bytes] | None, ac: bool) -> int:
    """The fewest bits a table's symbol takes with the magnitude bits it announces: any DC symbol; for AC,
    end-of-block or a coefficient (a zero run alone cannot end a block). 1 without a table."""
    if table is None:
        return 1
    counts, symbols = table
    best, at = 64, 0
    for length, count in enumerate(counts, start=1):
        if length >= best:
            break
        for symbol in symbols[at:at + count]:
            if not ac or symbol == 0 or symbol & 15:
                best = min(best, length + (symbol & 15))
        at += count
    return best


def _jpeg_shortfall(data: bytes, restarts: bool = False) -> tuple[str | None, int | None]:
    """Whether some scan of a Huffman-coded JPEG holds fewer bits than its blocks need at the very least.

    A block costs at least its shortest DC code (plus the magnitude bits it announces), and in a sequential
    scan also its end-of-block code or a last coefficient; a progressive DC refinement costs a bit a block.
    The bound is exact arithmetic on the file's own tables, so no valid JPEG falls under it; it catches a
    header that claims more pixels than the data can hold (not a smaller edit, which only a full entropy
    decode would see). Progressive AC scans (end-of-band runs) and arithmetic coding are not bounded.
    `restarts`: also count the restart markers of files that have them, one between each two intervals
    of MCUs, an exact measure of how far a scan's data goes (which blocks made up after it can hide).
    """
    if data[:2] != b"\xff\xd8":
        return None, None
    tables: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    frame: dict[str, object] | None = None
    at, scan_end, interval = 2, None, 0
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break  # lost the marker chain: leave it to the decoder
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        segment = data[at + 4:at + 2 + length]
        at += 2 + length
        if marker == 0xC4:
            tables.update(_huffman_tables(segment))
        elif marker == 0xDD:  # DRI: MCUs per restart interval
            interval = int.from_bytes(segment[0:2], "big")
        elif marker in (0xC0, 0xC1, 0xC2):  # Huffman baseline, extended, progressive (8 or 12 bits)
            count = segment[5]
            components = {segment[6 + 3 * i]: (segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15) for i in range(count)}
            frame = {"height": int.from_bytes(segment[1:3], "big"), "width": int.from_bytes(segment[3:5], "big"),
                     "components": components, "progressive": marker == 0xC2}
        elif marker in (0xC3, 0xC5, 0xC6, 0xC7) or 0xC9 <= marker <= 0xCF and marker != 0xCC:
            return None, None  # lossless, hierarchical or arithmetic-coded: not bounded here
        elif marker == 0xDA:
            end = _JPEG_MARKER.search(data, at)
            end_at = end.start() if end else len(data)
            if frame is not None:
                needed = _scan_min_bits(segment, frame, tables)
                if needed > 8 * (end_at - at):
                    return (f"{frame['width']}x{frame['height']} pixels need at least {needed // 8:,} bytes of image "
                            f"data in a scan that holds {end_at - at:,}"), None
                if restarts and interval:
                    expected = -(-_scan_mcus(segment, frame) // interval) - 1
                    found = len(_JPEG_RESTART.findall(data, at, end_at))
                    if found < expected:
                        return (f"{frame['width']}x{frame['height']} pixels need {expected:,} restart markers in a "
                                f"scan that holds {found:,}"), None
            at = scan_end = end_at
    return None, scan_end if frame is not None else None


def _scan_mcus(segment: bytes, frame: dict) -> int:
    """How many MCUs the scan that `segment` (an SOS header) starts holds: a block each, for one component."""
    width, height, components = frame["width"], frame["height"], frame["components"]
    h_max = max(h for h, _ in components.values())
    v_max = max(v for _, v in components.values())
    if segment[0] == 1:
        h, v = components[segment[1]]
        return -(-(-(-width * h // h_max)) // 8) * -(-(-(-height * v // v_max)) // 8)
    return -(-width // (8 * h_max)) * -(-height // (8 * v_max))


def _scan_min_bits(segment: bytes, frame: dict, tables: dict[tuple[int, int], tuple[bytes, bytes]]) -> int:
    """The fewest bits the scan that `segment` (an SOS header) starts can take, on `frame`'s size and tables."""
    count = segment[0]
    selectors = {segment[1 + 2 * i]: (segment[2 + 2 * i] >> 4, segment[2 + 2 * i] & 15) for i in range(count)}
    start, _, approximation = segment[1 + 2 * count], segment[2 + 2 * count], segment[3 + 2 * count]
    if frame["progressive"] and start > 0:
        return 0  # an AC band: one end-of-band run may cover thousands of blocks
    if not frame["height"] or not frame["width"]:
        return 0  # the height comes later (DNL)
    mcus = _scan_mcus(segment, frame)
    total = 0
    for component, (dc_table, ac_table) in selectors.items():
        h, v = frame["components"][component]
        # Non-interleaved: an MCU is one of the component's blocks; interleaved: h·v, padding blocks included.
        blocks = mcus if count == 1 else mcus * h * v
        if frame["progressive"] and approximation >> 4:  # DC refinement: one bit a block
            per_block = 1
        else:
            per_block = _cheapest_code(tables.get((0, dc_table)), ac=False)
            if not frame["progressive"]:
                per_block += _cheapest_code(tables.get((1, ac_table)), ac=True)
        total += blocks * per_block
    return total


#: PNG colour types -> samples per pixel.
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_shortfall(data: bytes) -> str | None:
    """Whether a PNG's image data inflates to fewer bytes than its header's rows need."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    at, header, stream = 8, None, zlib.decompressobj()
    inflated = 0
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            width, height = int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big")
            bits, samples, interlaced = body[8], _PNG_SAMPLES[body[9]], body[12]
            header = (width, height, bits * samples, interlaced)
        elif kind == b"IDAT" and header:
            while body and not stream.eof:  # count what inflates, a bounded piece at a time
                inflated += len(stream.decompress(body, 1 << 20))
                body = stream.unconsumed_tail
        elif kind in (b"IEND", b"fdAT"):
            break
    if header is None:
        return None
    width, height, pixel_bits, interlaced = header
    needed = _png_raw_bytes(width, height, pixel_bits, interlaced)
    if inflated < needed:
        return f"{width}x{height} pixels need {needed:,} bytes of image data, the file holds {inflated:,}"
    return None


def _png_raw_bytes(width: int, height: int, pixel_bits: int, interlaced: int) -> int:
    """The size of a PNG's filtered image data: each row's filter byte and pixels, for each Adam7 pass."""
    if not interlaced:
        return height * (1 + -(-width * pixel_bits // 8))
    total = 0
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        columns, rows = -(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0
        if columns and rows:
            total += rows * (1 + -(-columns * pixel_bits // 8))
    return total


def _decoded_rgb(image: Image.Image, what: str, first_frame: bool = False, fit: tuple[int, int] | None = None,
                 loaded: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Refuse a bomb from its header, then decode (the first frame, if asked; a JPEG at its draft scale for
    `fit`), let `loaded` check the decoded image, and convert to RGB."""
    width, height = image.size  # from the header; nothing decoded yet
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{what} claims {width}x{height} pixels, over the limit of {MAX_PIXELS} "
            "(a decompression bomb?); raise ZOO_MAX_PIXELS to accept larger images."
        )
    try:
        if first_frame:
            image.seek(0)
        _draft(image, fit)
        image.load()
        if loaded:
            loaded(image)
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
