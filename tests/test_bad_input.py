"""The bad-input matrix: every case against one model per preprocessing configuration (input sizes, resize
rule, number of images), never a hang; every other model gets what differs per model.

A valid case must give a prediction, and the model input it becomes must equal, pixel for pixel,
that of a reference built another way (numpy rotation for EXIF, palette lookup, 16 -> 8 bit...).
An invalid case must raise a zoo.ZooError whose message says what is wrong. A multi-image model
(the changer) gets each case in every slot, with a good image in the others.
"""
from __future__ import annotations

import io
import os
import signal
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

import zoo
import zoo.preprocess

SHIPPED = zoo.list()
pytestmark = [pytest.mark.skipif(not SHIPPED, reason="no shipped models"),
              pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")]
CASE_SECONDS = 60  # far above any case's cost: only a hang reaches it
RNG = np.random.default_rng(7)
PHOTO = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # H x W x RGB
GRAY = RNG.integers(0, 256, (40, 50), dtype=np.uint8)


@dataclass(frozen=True)
class Case:
    """`make(folder)` builds the input; `reference(folder)` its equivalent, or `error` the expected message."""

    make: Callable[[Path], Any]
    reference: Callable[[Path], Any] | None = None
    error: str | None = None
    limits: dict[str, int] = field(default_factory=dict)  # zoo.preprocess limits lowered for the case


def _encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _file(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data() if callable(data) else data)
        return path
    return make


def _decoded(name: str) -> Callable[[Path], np.ndarray]:
    """Reference for lossy files: the file's pixels as Pillow decodes them (no EXIF handling)."""
    return lambda folder: np.asarray(Image.open(folder / name).convert("RGB"))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (valid CRC) but holds one pixel of data."""
    data = bytearray(_encoded(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _gif_header(width: int, height: int) -> bytes:
    data = bytearray(_encoded(Image.new("P", (1, 1)), "GIF"))
    data[6:10] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes(data)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(Image.fromarray(PHOTO), "JPEG", quality=95, exif=exif.tobytes())


def _rotated(name: str, quarter_turns_clockwise: int) -> Callable[[Path], np.ndarray]:
    return lambda folder: np.rot90(_decoded(name)(folder), k=-quarter_turns_clockwise)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (30, 20), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


PALETTED = Image.fromarray(PHOTO).quantize(16)


def _palette_lookup(_: Path) -> np.ndarray:
    """What the paletted image shows, by indexing its colour table."""
    table = np.array(PALETTED.getpalette(), np.uint8).reshape(-1, 3)
    return table[np.asarray(PALETTED)]


def _cmyk_tiff() -> bytes:
    cmyk = np.dstack([255 - PHOTO, np.zeros(PHOTO.shape[:2], np.uint8)])  # no black: C, M, Y = 255 - R, G, B
    return _encoded(Image.fromarray(cmyk, "CMYK"), "TIFF")


def _truncated(image: Image.Image, fmt: str) -> Callable[[], bytes]:
    return lambda: _encoded(image, fmt)[: len(_encoded(image, fmt)) // 2]


def _jpeg_claiming(image: Image.Image, width: int, height: int, **options: Any) -> Callable[[], bytes]:
    """A JPEG of `image` whose frame header (SOF0/SOF2) is edited to claim width x height."""
    def make() -> bytes:
        data = bytearray(_encoded(image, "JPEG", **options))
        at = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        data[at + 5:at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        return bytes(data)
    return make


def _jpeg_cut_with_an_end(image: Image.Image) -> Callable[[], bytes]:
    """A JPEG cut in the middle of its data and given a new end-of-image marker."""
    return lambda: _encoded(image, "JPEG")[: len(_encoded(image, "JPEG")) // 2] + b"\xff\xd9"


def _png_claiming(image: Image.Image, width: int, height: int, **options: Any) -> Callable[[], bytes]:
    """A PNG of `image` whose IHDR (valid CRC) claims width x height."""
    def make() -> bytes:
        data = bytearray(_encoded(image, "PNG", **options))
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
        return bytes(data)
    return make


def _interlaced_png(pixels: np.ndarray, cut: bool = False) -> Callable[[], bytes]:
    """An Adam7-interlaced RGB PNG of `pixels` (Pillow writes none); `cut`: its zlib stream holds only the
    first three quarters of the rows, and ends there."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    def make() -> bytes:
        height, width = pixels.shape[:2]
        rows = []
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                               (0, 1, 1, 2)):
            sub = pixels[y0::dy, x0::dx]
            rows += [b"\0" + row.tobytes() for row in sub] if sub.size else []
        header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 1])
        data = b"".join(rows[: len(rows) * 3 // 4] if cut else rows)  # cut at a row: the stream ends cleanly
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data))
                + chunk(b"IEND", b""))
    return make


def _webp_claiming_twice_the_height(image: Image.Image) -> Callable[[], bytes]:
    """A lossless WebP whose VP8L header claims twice the image's height."""
    def make() -> bytes:
        data = bytearray(_encoded(image, "WEBP", lossless=True))
        assert data[12:16] == b"VP8L"
        bits = int.from_bytes(data[21:25], "little")
        bits = (bits & ~(0x3FFF << 14)) | ((2 * image.height - 1) << 14)
        data[21:25] = bits.to_bytes(4, "little")
        return bytes(data)
    return make


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.png"
    if not path.exists():
        os.mkfifo(path)
    return path


def _opened_truncated_jpeg(folder: Path) -> Image.Image:
    data = _encoded(Image.fromarray(PHOTO), "JPEG")
    return Image.open(io.BytesIO(data[: len(data) * 2 // 3]))  # the header reads; the pixels do not


def _closed_image(_: Path) -> Image.Image:
    image = Image.open(io.BytesIO(PHOTO_PNG))
    image.close()
    return image


def _array(value: np.ndarray) -> Callable[[Path], np.ndarray]:
    return lambda _: value


def _value(value: Any) -> Callable[[Path], Any]:
    return lambda _: value


PHOTO_PNG = _encoded(Image.fromarray(PHOTO), "PNG")
GRAY_RGB = np.repeat(GRAY[:, :, None], 3, axis=2)
WIDE = RNG.integers(0, 256, (3, 1000, 3), dtype=np.uint8)
TALL = RNG.integers(0, 256, (1000, 3, 3), dtype=np.uint8)
BITS = RNG.random((40, 50)) > 0.5
LARGE = np.asarray(Image.linear_gradient("L").resize((3000, 2000)).convert("RGB"))
NOISE = Image.fromarray(RNG.integers(0, 256, (200, 300, 3), dtype=np.uint8))
THUMB = Image.fromarray(PHOTO[:32, :32])
GREY = np.full((48, 64, 3), 128, np.uint8)  # decodes to exactly 128, as libjpeg fills missing blocks
BLACK_END = np.vstack([PHOTO, np.zeros((2, 50, 3), np.uint8)])  # ends in 0, as a PNG's missing rows

CASES: dict[str, Case] = {
    # Files that are not images.
    "zero-byte png": Case(_file("empty.png", b""), error="empty file"),
    "zero-byte jpeg": Case(_file("empty.jpg", b""), error="empty file"),
    "truncated jpeg": Case(_file("cut.jpg", _truncated(Image.fromarray(PHOTO), "JPEG")), error="damaged or truncated"),
    "truncated png": Case(_file("cut.png", _truncated(Image.fromarray(PHOTO), "PNG")), error="damaged or truncated"),
    # Files whose data does not fill the size their header claims (Pillow's decoders would make the rest up).
    "jpeg 32x32 claiming 7000x7000": Case(_file("claims.jpg", _jpeg_claiming(THUMB, 7000, 7000)),
                                          error="does not match its header"),
    "jpeg claiming twice its height": Case(_file("tall-claim.jpg", _jpeg_claiming(Image.fromarray(PHOTO), 50, 80)),
                                           error="does not match its header"),
    "progressive jpeg claiming twice its height": Case(
        _file("tall-claim-p.jpg", _jpeg_claiming(Image.fromarray(PHOTO), 50, 80, progressive=True)),
        error="does not match its header"),
    "jpeg cut and given a new end marker": Case(_file("cut-ended.jpg", _jpeg_cut_with_an_end(NOISE)),
                                                error="does not match its header"),
    "png claiming twice its height": Case(_file("tall-claim.png", _png_claiming(Image.fromarray(PHOTO), 50, 80)),
                                          error="does not match its header"),
    "interlaced png whose data ends early": Case(_file("cut-i.png", _interlaced_png(PHOTO, cut=True)),
                                                 error="does not match its header"),
    "webp claiming twice its height": Case(
        _file("tall-claim.webp", _webp_claiming_twice_the_height(Image.fromarray(PHOTO))), error="damaged or truncated"),
    "random bytes as .jpg": Case(_file("noise.jpg", RNG.bytes(5000)), error="not a readable image"),
    "random bytes as .png": Case(_file("noise.png", RNG.bytes(5000)), error="not a readable image"),
    "text file": Case(_file("notes.txt", b"just some text\n" * 20), error="not a readable image"),
    "text file as .png": Case(_file("notes.png", b"just some text\n" * 20), error="not a readable image"),
    "postscript (no Ghostscript)": Case(_file("page.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"),
                                        error="not a readable image"),
    "missing path": Case(lambda folder: folder / "no-such-image.png", error="does not exist"),
    "directory": Case(lambda folder: folder, error="directory"),
    "named pipe (would block)": Case(_fifo, error="not a regular file"),
    "path with a NUL byte": Case(_value("image\0.png"), error="does not exist|cannot be read"),
    "path of 5000 characters": Case(_value("x" * 5000 + ".png"), error="cannot be read"),
    "file over ZOO_MAX_FILE_BYTES": Case(_file("big.png", PHOTO_PNG),
                                         error="over the limit", limits={"MAX_FILE_BYTES": 1000}),
    "decompression bomb png 60000x60000": Case(_file("bomb.png", _png_header(60000, 60000)),
                                               error="decompression bomb"),
    "png header over ZOO_MAX_PIXELS (80 M pixels)": Case(_file("tall-claim.png", _png_header(10000, 8000)),
                                                         error="claims 10000x8000 pixels, over the limit"),
    "decompression bomb gif 65535x65535": Case(_file("bomb.gif", _gif_header(65535, 65535)),
                                               error="decompression bomb"),
    # Images of every mode and shape.
    "16-bit png": Case(_file("deep.png", _encoded(Image.fromarray(GRAY.astype(np.uint16) * 257), "PNG")),
                       _array(GRAY_RGB)),
    "grayscale png": Case(_file("gray.png", _encoded(Image.fromarray(GRAY), "PNG")),
                          _array(GRAY_RGB)),
    "rgba png, opaque": Case(_file("opaque.png", _encoded(Image.fromarray(PHOTO).convert("RGBA"), "PNG")),
                             _array(PHOTO)),
    "rgba png, transparent": Case(_file("clear.png", _encoded(Image.new("RGBA", (50, 40), (9, 9, 9, 0)), "PNG")),
                                  _array(np.full((40, 50, 3), 255, np.uint8))),
    "palette png": Case(_file("palette.png", _encoded(PALETTED, "PNG")), _palette_lookup),
    "cmyk tiff": Case(_file("cmyk.tif", _cmyk_tiff), _array(PHOTO)),
    "cmyk jpeg": Case(_file("cmyk.jpg", lambda: _encoded(Image.fromarray(PHOTO).convert("CMYK"), "JPEG")),
                      _decoded("cmyk.jpg")),
    "1-bit png": Case(_file("bits.png", _encoded(Image.fromarray(BITS), "PNG")),
                      _array(np.repeat(BITS[:, :, None], 3, axis=2).astype(np.uint8) * 255)),
    "exif-rotated jpeg (90 degrees)": Case(_file("turned.jpg", _exif_jpeg(6)), _rotated("turned.jpg", 1)),
    "exif-rotated jpeg (180 degrees)": Case(_file("upside.jpg", _exif_jpeg(3)), _rotated("upside.jpg", 2)),
    "animated gif (first frame)": Case(_file("moving.gif", _animated_gif),
                                       _array(np.tile(np.array([255, 0, 0], np.uint8), (20, 30, 1)))),
    "gif": Case(_file("still.gif", _encoded(PALETTED, "GIF")), _palette_lookup),
    "bmp": Case(_file("plain.bmp", _encoded(Image.fromarray(PHOTO), "BMP")), _array(PHOTO)),
    "webp (lossless)": Case(_file("plain.webp", _encoded(Image.fromarray(PHOTO), "WEBP", lossless=True)),
                            _array(PHOTO)),
    "progressive jpeg": Case(_file("progressive.jpg", _encoded(Image.fromarray(PHOTO), "JPEG", progressive=True)),
                             _decoded("progressive.jpg")),
    "jpeg of flat 128 grey": Case(_file("grey.jpg", _encoded(Image.fromarray(GREY), "JPEG")), _array(GREY)),
    "png ending in black rows": Case(_file("black-end.png", _encoded(Image.fromarray(BLACK_END), "PNG")),
                                     _array(BLACK_END)),
    "interlaced png": Case(_file("interlaced.png", _interlaced_png(PHOTO)), _array(PHOTO)),
    "1x1 png": Case(_file("dot.png", _encoded(Image.fromarray(PHOTO[:1, :1]), "PNG")), _array(PHOTO[:1, :1])),
    "1000x3 png": Case(_file("wide.png", _encoded(Image.fromarray(WIDE), "PNG")), _array(WIDE)),
    "3x1000 png": Case(_file("tall.png", _encoded(Image.fromarray(TALL), "PNG")), _array(TALL)),
    "3000x2000 jpeg": Case(_file("large.jpg", _encoded(Image.fromarray(LARGE), "JPEG")), _decoded("large.jpg")),
    "png bytes": Case(_value(PHOTO_PNG), _array(PHOTO)),
    "random bytes": Case(_value(RNG.bytes(300)), error="not a readable image"),
    "empty bytes": Case(_value(b""), error="empty bytes"),
    # PIL images handed over directly.
    "pil image, lazily opened": Case(lambda folder: Image.open(_file("lazy.png", PHOTO_PNG)(folder)),
                                     _array(PHOTO)),
    "pil image, 16-bit": Case(_value(Image.fromarray(GRAY.astype(np.uint16) * 257)), _array(GRAY_RGB)),
    "pil image, 0x0": Case(_value(Image.new("RGB", (0, 0))), error="no pixels"),
    "pil image, truncated data": Case(_opened_truncated_jpeg, error="damaged or truncated"),
    "pil image, closed": Case(_closed_image, error="cannot be decoded"),
    # Arrays.
    "nan array": Case(_array(np.full((8, 8, 3), np.nan)), error="NaN"),
    "inf array": Case(_array(np.full((8, 8, 3), np.inf, np.float32)), error="NaN or infinite"),
    "-inf in a float array": Case(_array(np.where(np.eye(8)[:, :, None] > 0, -np.inf, 0.5)), error="NaN or infinite"),
    "empty array": Case(_array(np.array([])), error="not an image"),
    "0x0x3 array": Case(_array(np.zeros((0, 0, 3), np.uint8)), error="no pixels"),
    "0-d array": Case(_array(np.array(3)), error="not an image"),
    "1-d array": Case(_array(np.zeros(12, np.uint8)), error="not an image"),
    "4-d array": Case(_array(np.zeros((1, 8, 8, 3), np.uint8)), error="not an image"),
    "5-channel array": Case(_array(np.zeros((8, 8, 5), np.uint8)), error="not an image"),
    "2-channel array": Case(_array(np.zeros((8, 8, 2), np.uint8)), error="not an image"),
    "object array": Case(_array(np.empty((8, 8, 3), object)), error="object"),
    "complex array": Case(_array(np.zeros((8, 8, 3), complex)), error="complex"),
    "string array": Case(_array(np.full((8, 8, 3), "a")), error="not supported"),
    "float array above 1": Case(_array(np.full((8, 8, 3), 2.0)), error=r"\[0, 1\]"),
    "negative integers": Case(_array(np.full((8, 8, 3), -1, np.int16)), error="0..255"),
    "uint16 array above 255": Case(_array(np.full((8, 8, 3), 4000, np.uint16)), error="0..255"),
    "array over ZOO_MAX_PIXELS (no memory used)": Case(_array(np.broadcast_to(np.uint8(1), (10000, 6000, 3))),
                                                       error="over the limit"),
    "uint8 array": Case(_array(PHOTO), _array(PHOTO)),
    "float [0, 1] array": Case(_array(PHOTO / 255.0), _array(PHOTO)),
    "float16 array": Case(_array((PHOTO / 255.0).astype(np.float16)), _array(np.rint(
        (PHOTO / 255.0).astype(np.float16).astype(np.float64) * 255).astype(np.uint8))),
    "bool array": Case(_array(BITS), _array(np.repeat(BITS[:, :, None], 3, axis=2).astype(np.uint8) * 255)),
    "non-contiguous, reversed array": Case(_array(PHOTO[::-1, ::2]), _array(np.ascontiguousarray(PHOTO[::-1, ::2]))),
    "np.matrix": Case(lambda _: np.asmatrix(GRAY), _array(GRAY_RGB)),
    # Python values that are not images.
    "None": Case(_value(None), error="NoneType|missing an image"),
    "int": Case(_value(7), error="int"),
    "float": Case(_value(0.5), error="float"),
    "dict": Case(_value({"image": "x.png"}), error="dict"),
    "list of lists": Case(_value([[0, 1], [2, 3]]), error="list"),
    "empty string": Case(_value(""), error="empty path"),
}

_MODELS: dict[str, zoo.Model] = {}


def _model(name: str) -> zoo.Model:
    if name not in _MODELS:
        _MODELS[name] = zoo.load(name, device="cpu")
    return _MODELS[name]


@pytest.fixture(autouse=True)
def no_hang():
    """Fail, rather than hang, a case that runs for CASE_SECONDS."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def interrupt(*_: object) -> None:
        raise TimeoutError(f"the case ran for {CASE_SECONDS} s: a hang")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bad-input")


def _check_prediction(model: zoo.Model, prediction: zoo.Prediction) -> None:
    assert prediction.label in model.labels
    values = np.array(list(prediction.probs.values()))
    assert np.isfinite(values).all() and values.sum() == pytest.approx(1.0, abs=1e-5)


def test_the_matrix_has_at_least_forty_cases_and_the_docs_say_how_many():
    assert len(CASES) >= 40
    security = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    assert f"runs {len(CASES)} such cases" in security


def _one_per_preprocessing() -> list[str]:
    """The first model of each preprocessing configuration: the inputs' sizes and resize rules."""
    by_configuration: dict[tuple, str] = {}
    for name in SHIPPED:
        key = tuple((s.height, s.width, s.resize) for s in zoo.card(name).inputs)
        by_configuration.setdefault(key, name)
    return sorted(by_configuration.values())


@pytest.mark.parametrize("case_name", sorted(CASES))
@pytest.mark.parametrize("name", _one_per_preprocessing())
def test_case(name, case_name, folder, monkeypatch):
    case = CASES[case_name]
    if case.make is _fifo and not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this system")
    for limit, value in case.limits.items():
        monkeypatch.setattr(zoo.preprocess, limit, value)
    model = _model(name)
    slots = len(model.card.inputs)
    for slot in range(slots):
        item = [PHOTO] * slots
        item[slot] = case.make(folder)
        if case.error is not None:
            with pytest.raises(zoo.ZooError, match=case.error):
                model.predict(*item)
            continue
        _check_prediction(model, model.predict(*item))
        reference = [PHOTO] * slots
        reference[slot] = case.reference(folder)
        as_item = tuple if slots > 1 else (lambda images: images[0])
        got, expected = model.prepare_batch([as_item(item)]), model.prepare_batch([as_item(reference)])
        for graph_input in (spec.name for spec in model.card.inputs):
            np.testing.assert_array_equal(got[graph_input], expected[graph_input])


#: What differs per model is its graph and postprocessing: one valid and one invalid case reach each.
PER_MODEL_CASES = ("grayscale png", "text file as .png")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_model_predicts_a_valid_case_and_refuses_an_invalid_one(name, folder):
    model = _model(name)
    slots = len(model.card.inputs)
    good, bad = (CASES[case_name] for case_name in PER_MODEL_CASES)
    _check_prediction(model, model.predict(*[good.make(folder)] * slots))
    with pytest.raises(zoo.ZooError, match=bad.error):
        model.predict(*[bad.make(folder)] * slots)


def _first_of_each_input_count() -> list[str]:
    by_count = {len(zoo.card(name).inputs): name for name in reversed(SHIPPED)}
    return sorted(by_count.values())


@pytest.mark.parametrize("name", _first_of_each_input_count())
def test_wrong_number_of_images_and_batches(name):
    model = _model(name)
    slots = len(model.card.inputs)
    with pytest.raises(zoo.ImageError, match=f"takes {slots} image"):
        model.predict(*[PHOTO] * (slots + 1))
    with pytest.raises(zoo.ImageError, match=f"takes {slots} image"):
        model.predict()
    for not_a_list in (None, 5, "photo.png", b"\x89PNG", Image.fromarray(PHOTO)):
        with pytest.raises(zoo.ImageError, match="list of inputs"):
            model.predict_batch(not_a_list)
    assert model.predict_batch([]) == []
    if slots > 1:
        with pytest.raises(zoo.ImageError, match="missing an image"):
            model.predict(PHOTO, None)
        with pytest.raises(zoo.ImageError, match=f"not a tuple of {slots}"):
            model.predict_batch([PHOTO])


@pytest.mark.skipif(not any(len(zoo.card(n).inputs) == 2 for n in SHIPPED), reason="no two-image model")
def test_a_pair_of_different_sizes_is_each_fitted_to_the_input():
    model = _model(next(n for n in SHIPPED if len(zoo.card(n).inputs) == 2))
    small, large = PHOTO[:10, :17], np.asarray(Image.fromarray(PHOTO).resize((640, 480)))
    _check_prediction(model, model.predict(small, large))
    feeds = model.prepare_batch([(small, large)])
    spec_a, spec_b = model.card.inputs
    np.testing.assert_array_equal(feeds[spec_a.name][0], zoo.preprocess.prepare(small, spec_a.height, spec_a.width))
    np.testing.assert_array_equal(feeds[spec_b.name][0], zoo.preprocess.prepare(large, spec_b.height, spec_b.width))

