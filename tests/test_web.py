"""The static site of `python -m export web` in headless Chromium (Debian's chromium + chromedriver, Selenium).

The site is built once into a temporary folder and served on 127.0.0.1 as any static host serves it (no special
headers); Chromium resolves no other host (--host-resolver-rules), and every request the page made is read from
its performance log. The checks:

- every model's shipped test vectors through the page's onnxruntime-web: float models within the card's
  tolerance in probability, int8 variants within 5e-2 and the same top class (docs/runtimes.md);
- window.zoo.predict against zoo.load(name).predict on real images (CIFAR-10 test JPEGs, Caltech-101 photos of
  every size, large and EXIF-rotated JPEGs made from them; pairs for the changer): the same label on >= 99%,
  probabilities within 0.02; the preprocessed pixels against zoo.preprocess.prepare;
- the JS resize against Pillow's on arrays (node, no browser): bit for bit;
- each tab after a prediction, as a screenshot (into $ZOO_SCREENSHOTS when set).

Figures are printed (pytest -s) and, with ZOO_WEB_REPORT=FILE, written as JSON.
"""
from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import random
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo
from zoo.preprocess import prepare

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ["ZOO_TEST_DATA"]).parent if "ZOO_TEST_DATA" in os.environ else ROOT.parent / "shared" / "data"
CIFAR = DATA / "cifar10-jpeg"
CALTECH = DATA / "caltech101-subset"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
NODE = shutil.which("node")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")

#: Largest probability difference from the shipped test vectors (docs/runtimes.md): the card's tolerance for
#: float models; an int8 graph's integer kernels round each layer their own way.
INT8_TOLERANCE = 5e-2
#: Large JPEGs (the draft, below): an int8 variant's largest probability difference from zoo's, where their inputs
#: differ by a grey level here and there (0.14 measured for carplane-triplet-int8 on a photo near its boundary).
LARGE_INT8_GAP = 2e-1
#: Images per model compared with zoo, the share of them that must get zoo's label, the largest probability gap.
IMAGES, AGREEMENT, PROB_GAP = 200, 0.99, 0.02
WAIT_SECONDS = 300
pytestmark = pytest.mark.skipif(not (NODE and shutil.which("npm")),
                                reason="needs node and npm (apt-get install -y nodejs npm, as .ci/run does)")
NO_BROWSER = ("needs chromium and chromedriver (apt-get install -y chromium chromium-driver, as .ci/run does; or "
              "set CHROMIUM and CHROMEDRIVER)")
REPORT: dict[str, dict[str, object]] = {}
server_stop = None  # the module's server's shutdown, set by the server fixture


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """A plain static host for the site; /data/ serves the test images."""

    def __init__(self, *args, site: Path, data: Path, **kwargs):
        self.data = data
        super().__init__(*args, directory=str(site), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.startswith("/data/"):
            return str(self.data / path[len("/data/"):].split("?")[0])
        return super().translate_path(path)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from export.web import write_site

    out = tmp_path_factory.mktemp("web") / "site"
    write_site(out)
    return out


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    """The test images the page reads: links to the data set's files, and large and EXIF-rotated JPEGs."""
    if not (CIFAR / "test").is_dir() or not CALTECH.is_dir():
        pytest.skip(f"test images not found under {DATA} (set ZOO_TEST_DATA to the cifar10-jpeg folder)")
    folder = tmp_path_factory.mktemp("data")
    (folder / "cifar").symlink_to(CIFAR / "test")
    (folder / "caltech").symlink_to(CALTECH)
    made = folder / "made"
    made.mkdir()
    photos = sorted(CALTECH.rglob("*.jpg"))[::400][:6]
    for k, photo in enumerate(photos):
        with Image.open(photo) as image:
            image = image.convert("RGB")
        # Large: drafted at 1/2-1/8 by zoo. EXIF-rotated: the pixels stored turned, the tag turning them back.
        image.resize((image.width * 7, image.height * 7), Image.Resampling.BICUBIC).save(made / f"large-{k}.jpg", quality=90)
        orientation = (3, 6, 8, 2, 5, 7)[k]
        stored = image.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                  8: Image.Transpose.ROTATE_270, 2: Image.Transpose.FLIP_LEFT_RIGHT,
                                  5: Image.Transpose.TRANSPOSE, 7: Image.Transpose.TRANSVERSE}[orientation])
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored.save(made / f"exif-{orientation}.jpg", quality=90, exif=exif)
    return folder


@pytest.fixture(scope="module")
def server(site: Path, data_folder: Path):
    handler = functools.partial(_Handler, site=site, data=data_folder)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    global server_stop
    server_stop = httpd.shutdown
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _chromium(extra: tuple[str, ...] = ()):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # No host but the serving address resolves: a CDN or a telemetry call would fail, and the log shows it.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1180",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                     "--disable-background-networking", "--disable-component-update", "--no-pings", *extra):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT_SECONDS)
    return driver


def _open_site(driver, server: str, wait: float = 120) -> None:
    """Load the site and wait for its script to be ready; an error it reports at start-up fails the test."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server + "/")
    try:
        WebDriverWait(driver, wait).until(lambda d: d.execute_script("return window.zooReady || window.zooError"))
    except Exception:
        print(driver.page_source[:3000]); print(driver.get_log("browser")); raise
    assert not driver.execute_script("return window.zooError"), driver.execute_script("return window.zooError")


@pytest.fixture(scope="module")
def page(server):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_BROWSER)

    driver = _chromium()
    try:
        _open_site(driver, server)
        yield driver
    finally:
        driver.quit()


SHIP = zoo.EXAMPLES / "cifar10" / "ship.jpg"


def _ship_in_the_page(driver) -> dict:
    """The page's `cnn` label for SHIP (given as a Blob) and where its model came from ('network' or 'cache')."""
    image = base64.b64encode(SHIP.read_bytes()).decode()
    return call(driver, """const bytes = Uint8Array.from(atob(args[0]), (c) => c.charCodeAt(0));
        const p = await zoo.predict('cnn', new Blob([bytes], {type: 'image/jpeg'}));
        const {from} = await zoo.load('cnn'); return {label: p.label, from};""", image)


def call(driver, script: str, *args):
    """Await `script` (the body of an async function of `args`) in the page; its error fails the test."""
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"(async (...args) => {{ {script} }})(...Array.from(arguments).slice(0, -1))"
        ".then((value) => done({value}), (error) => done({error: String(error && error.stack || error)}));", *args)
    assert "error" not in result, result["error"]
    return result["value"]


#: Under node: preprocess.js's fitToInput of each case (RGB pixels, base64) -> base64 pixels, one JSON line.
RESIZE_UNDER_NODE = """
import { fitToInput } from %s;
import { readFileSync } from 'node:fs';
const cases = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map((c) => Buffer.from(fitToInput(Uint8Array.from(Buffer.from(c.rgb, 'base64')),
  c.width, c.height, c.out, c.out)).toString('base64'))));
"""


def test_resize_is_pillows_bit_for_bit(tmp_path):
    """The page's scale-to-cover and centre crop against zoo.preprocess.fit_to_input (Pillow) on the same pixels:
    photos of many sizes and shapes, smaller and larger than the inputs, noise and smooth content."""
    from PIL import ImageFilter

    from zoo.preprocess import fit_to_input

    rng = np.random.default_rng(0)
    cases, expected = [], []
    for width, height in [(300, 200), (200, 300), (32, 32), (31, 45), (1000, 7), (65, 64), (3, 3), (500, 333),
                          (64, 48), (257, 129), (17, 90)]:
        pixels = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for source in (pixels, pixels.filter(ImageFilter.GaussianBlur(2))):
            for out in (32, 64):
                cases.append({"rgb": _b64(np.asarray(source)), "width": width, "height": height, "out": out})
                expected.append(fit_to_input(source, out, out))
    script = tmp_path / "resize.mjs"
    script.write_text(RESIZE_UNDER_NODE % json.dumps((ROOT / "web" / "src" / "preprocess.js").as_uri()))
    done = subprocess.run([NODE, str(script)], input=json.dumps(cases), capture_output=True, text=True, check=True)
    for case, got, want in zip(cases, json.loads(done.stdout), expected):
        got = np.frombuffer(base64.b64decode(got), np.uint8).reshape(want.shape)
        assert np.array_equal(got, want), (f"{case['width']}x{case['height']} -> {case['out']}: "
                                           f"{int((got != want).sum())} values differ")


PAIR_UNDER_NODE = """
import { pairFromPhoto } from %s;
import { readFileSync } from 'node:fs';
const cases = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify(cases.map((c) => pairFromPhoto(Uint8Array.from(Buffer.from(c.rgb, 'base64')), c.width, c.height,
  256, c.change).map((v) => Buffer.from(v).toString('base64')))));
"""
#: Changes the changer tab's sliders can make (shift x, shift y, angle, zoom), and none.
SLIDER_CHANGES = [(0.0, 0.0, 0.0, 1.0), (0.1, -0.05, 15.0, 1.2), (0.0, 0.0, -30.0, 0.7), (-0.25, 0.25, 7.0, 1.6),
                  (0.2, 0.0, 0.0, 0.625)]


def test_pair_from_photo_is_zoos_bit_for_bit(tmp_path):
    """The changer tab's "Make A and B" (preprocess.js: pairFromPhoto) against zoo.geometry.pair_from_photo."""
    from zoo.geometry import pair_from_photo
    from zoo.preprocess import load_image

    cases, expected = [], []
    for photo in sorted((zoo.EXAMPLES / "photos").glob("*.jpg")):
        image = load_image(photo)
        for shift_x, shift_y, angle, scale in SLIDER_CHANGES:
            cases.append({"rgb": _b64(np.asarray(image)), "width": image.width, "height": image.height,
                          "change": {"shiftX": shift_x, "shiftY": shift_y, "angle": angle, "scale": scale}})
            expected.append(pair_from_photo(image, 256, shift_x, shift_y, angle, scale))
    script = tmp_path / "pair.mjs"
    script.write_text(PAIR_UNDER_NODE % json.dumps((ROOT / "web" / "src" / "preprocess.js").as_uri()))
    done = subprocess.run([NODE, str(script)], input=json.dumps(cases), capture_output=True, text=True, check=True)
    for case, got, want in zip(cases, json.loads(done.stdout), expected):
        for view, encoded, array in zip("AB", got, want):
            pixels = np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(array.shape)
            assert np.array_equal(pixels, array), f"{case['change']}: view {view} differs in {int((pixels != array).sum())} values"


def test_page_starts_isolated_on_wasm(page):
    backend = call(page, "return {...await zoo.backend(), browser: navigator.userAgent};")
    REPORT["backend"] = backend
    REPORT["cpu"] = _cpu()
    print("backend", backend)
    assert backend["provider"] in ("wasm", "webgpu")
    assert backend["version"] == json.loads((ROOT / "web" / "package-lock.json").read_text())[
        "packages"]["node_modules/onnxruntime-web"]["version"]
    # Nothing of a model is downloaded before the visitor picks it.
    fetched = call(page, "return performance.getEntriesByType('resource').map((e) => e.name);")
    assert any(url.endswith("/models.json") for url in fetched), fetched
    assert not [url for url in fetched if url.endswith(".onnx")], fetched
    # The service worker makes any static host cross-origin isolated: onnxruntime-web runs on several threads.
    assert backend["crossOriginIsolated"] and backend["threads"] == min(4, os.cpu_count() or 1)


def _quantized(name: str) -> bool:
    return "quantized_from" in zoo.card(name).extra


@pytest.mark.parametrize("name", zoo.list())
def test_shipped_vectors_in_the_page(page, name):
    from bench.runtimes import probabilities, shipped_vectors

    card = zoo.card(name)
    feeds, expected = shipped_vectors(name)
    loaded = call(page, "const {timing, provider, from, model} = await zoo.load(args[0]);"
                        "return {timing, provider, from, bytes: model.bytes};", name)
    inputs = {k: {"data": _b64(v), "dims": list(v.shape)} for k, v in feeds.items()}
    got = call(page, """
        const inputs = Object.fromEntries(Object.entries(args[1]).map(([k, v]) =>
          [k, {dims: v.dims, data: Uint8Array.from(atob(v.data), (c) => c.charCodeAt(0))}]));
        const out = await zoo.run(args[0], inputs);
        const model = (await zoo.list()).find((m) => m.name === args[0]);
        return model.outputs.map((o) => out[o]);""", name, inputs)
    outputs = [np.asarray(o["data"], dtype=np.float64).reshape(o["dims"]) for o in got]
    tolerance = INT8_TOLERANCE if _quantized(name) else card.tolerance
    gaps = [float(np.abs(mine - theirs).max()) for mine, theirs in
            zip(probabilities(card.task, outputs), probabilities(card.task, expected))]
    same_top = bool((outputs[0].argmax(1) == expected[0].argmax(1)).all())
    REPORT.setdefault(name, {}).update(vector_gap=max(gaps), vectors=len(outputs[0]), load=loaded, bytes=loaded["bytes"],
                                       raw_gap=max(float(np.abs(m - t).max()) for m, t in zip(outputs, expected)))
    print(name, "vectors", len(outputs[0]), "max probability gap", f"{max(gaps):.2e}", "load", loaded)
    assert same_top, f"{name}: the page's top class differs from the shipped outputs"
    assert max(gaps) <= tolerance, f"{name}: probabilities differ by {max(gaps):.2e} > {tolerance} from the shipped outputs"


def _classifier_images(data_folder: Path) -> list[tuple[str, ...]]:
    """IMAGES paths under the data folder: the EXIF-rotated JPEGs, Caltech-101 photos of every size (a stride
    through the sorted list) and CIFAR-10 test JPEGs of every class."""
    exif = sorted(f"made/{p.name}" for p in (data_folder / "made").glob("exif-*.jpg"))
    caltech = sorted(CALTECH.rglob("*.jpg"))
    photos = [f"caltech/{p.relative_to(CALTECH)}" for p in caltech[::len(caltech) // 44][:44]]
    classes = sorted(p.name for p in (CIFAR / "test").iterdir())
    per_class = -(-(IMAGES - len(exif) - len(photos)) // len(classes))
    cifar = [f"cifar/{c}/{p.name}" for c in classes for p in sorted((CIFAR / "test" / c).iterdir())[:per_class]]
    return [(p,) for p in (exif + photos + cifar)[:IMAGES]]


def _large_images(data_folder: Path, pairs: bool) -> list[tuple[str, ...]]:
    """The large JPEGs that zoo decodes at a draft scale (1/2-1/8): alone, or each with the next as a pair."""
    large = sorted(f"made/{p.name}" for p in (data_folder / "made").glob("large-*.jpg"))
    return [(p, large[(k + 1) % len(large)]) if pairs else (p,) for k, p in enumerate(large)]


@pytest.fixture(scope="module")
def changer_pairs(data_folder: Path) -> list[tuple[str, str]]:
    """IMAGES pairs: views cut from Caltech-101 photos with known changes (zoo.geometry.pair_from_photo, as
    the demo's sliders cut them; JPEG files), and pairs of the EXIF-rotated files."""
    from zoo.geometry import pair_from_photo

    folder = data_folder / "pairs"
    folder.mkdir(exist_ok=True)
    rng = random.Random(0)
    photos = sorted(CALTECH.rglob("*.jpg"))
    exif = sorted(f"made/{p.name}" for p in (data_folder / "made").glob("exif-*.jpg"))
    pairs = [(exif[k], exif[(k + 1) % len(exif)]) for k in range(len(exif))]
    for k, photo in enumerate(rng.sample(photos, IMAGES - len(pairs))):
        change = {"shift_x": rng.choice([0, rng.uniform(-0.2, 0.2)]), "shift_y": rng.choice([0, rng.uniform(-0.2, 0.2)]),
                  "angle": rng.choice([0, rng.uniform(-30, 30)]), "scale": rng.choice([1, rng.uniform(0.7, 1.4)])}
        with Image.open(photo) as image:
            a, b = pair_from_photo(image.convert("RGB"), 256, **change)
        Image.fromarray(a).save(folder / f"{k}-a.jpg", quality=90)
        Image.fromarray(b).save(folder / f"{k}-b.jpg", quality=90)
        pairs.append((f"pairs/{k}-a.jpg", f"pairs/{k}-b.jpg"))
    return pairs


#: In the page: each item (a tuple of paths under /data/) prepared as zoo.prepare, then predicted; the pixels too.
PREDICT_ALL = """
    const [name, base, items] = args;
    const model = (await zoo.list()).find((m) => m.name === name);
    const b64 = (bytes) => { let s = ''; for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192)); return btoa(s); };
    const out = [];
    for (const item of items) {
      const arrays = [];
      for (const [k, input] of model.inputs.entries()) arrays.push(await zoo.prepare(base + '/data/' + item[k], input.height, input.width));
      const p = await zoo.infer(name, arrays);
      p.pixels = arrays.map(b64);
      out.push(p);
    }
    return out;"""


def _compare(page, server, data_folder: Path, name: str, items: list[tuple[str, ...]]) -> dict[str, object]:
    """The page's predictions and inputs against zoo's on `items`: the figures."""
    card = zoo.card(name)
    changer = card.task == "change-detection"
    model = zoo.load(name, device="cpu", refine=False) if changer else zoo.load(name, device="cpu")
    theirs = model.predict_batch([tuple(data_folder / p for p in item) if changer else data_folder / item[0]
                                  for item in items])
    mine = call(page, PREDICT_ALL, name, server, [list(item) for item in items])
    gaps = [max(abs(m["probs"][k] - v) for k, v in t.probs.items()) for m, t in zip(mine, theirs)]
    pixel_gaps, page_inputs = [], []
    for m, item in zip(mine, items):
        arrays = []
        for encoded, path, spec in zip(m["pixels"], item, card.inputs):
            expected = prepare(data_folder / path, spec.height, spec.width)
            arrays.append(np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(expected.shape))
            pixel_gaps.append(int(np.abs(arrays[-1].astype(int) - expected).max()))
        page_inputs.append(tuple(arrays) if changer else arrays[0])
    # zoo on the page's own inputs: what the runtimes alone make of the same pixels.
    same_pixels = model.predict_batch(page_inputs)
    runtime_gaps = [max(abs(m["probs"][k] - v) for k, v in t.probs.items()) for m, t in zip(mine, same_pixels)]
    figures = {"images": len(items), "agreement": sum(m["label"] == t.label for m, t in zip(mine, theirs)) / len(items),
               "same_pixels_agreement": sum(m["label"] == t.label for m, t in zip(mine, same_pixels)) / len(items),
               "max_prob_gap": max(gaps), "mean_prob_gap": float(np.mean(gaps)), "runtime_max_prob_gap": max(runtime_gaps),
               "pixels_max_gap": max(pixel_gaps), "inputs_pixel_exact": sum(g == 0 for g in pixel_gaps) / len(pixel_gaps),
               "latency_ms_median": float(np.median([m["latency_ms"] for m in mine])), "backend": mine[0]["backend"],
               "worst": sorted(zip(gaps, items), reverse=True)[:3]}
    if changer:
        figures["max_change_gap"] = max(abs(m["changes"][k] - v) for m, t in zip(mine, theirs) for k, v in t.changes.items())
        figures["max_param_gap"] = {k: max(abs(m["params"][k] - t.params[k]) for m, t in zip(mine, theirs))
                                    for k in card.param_names}
        assert all(m["refined"] is False for m in mine), "the page's changer params are the network's: refined false"
    return figures


@pytest.mark.parametrize("name", zoo.list())
def test_page_predicts_as_zoo(page, server, data_folder, changer_pairs, name):
    changer = zoo.card(name).task == "change-detection"
    items = changer_pairs if changer else _classifier_images(data_folder)
    assert len(items) >= IMAGES
    figures = _compare(page, server, data_folder, name, items)
    REPORT.setdefault(name, {})["images"] = figures
    print(name, json.dumps(figures))
    assert figures["runtime_max_prob_gap"] <= (INT8_TOLERANCE if _quantized(name) else zoo.card(name).tolerance), \
        f"{name}: on the same pixels, onnxruntime-web and onnxruntime differ by {figures['runtime_max_prob_gap']:.2e}"
    assert figures["agreement"] >= AGREEMENT, f"{name}: zoo's label on {figures['agreement']:.1%} only; {figures['worst']}"
    assert figures["max_prob_gap"] <= PROB_GAP, f"{name}: probabilities differ by {figures['max_prob_gap']:.3f}; {figures['worst']}"
    if changer:
        assert figures["max_change_gap"] <= PROB_GAP, f"{name}: change probabilities differ by {figures['max_change_gap']:.3f}"


#: Large JPEGs: zoo decodes them at a draft scale in libjpeg's DCT, the page from full-size pixels reduced by box
#: averaging (preprocess.js: reduce). Their inputs differ by a grey level here and there; the float models'
#: labels are zoo's. An int8 graph's integer kernels can turn such a grey level into a larger move (0.14 in
#: probability on one photo near carplane-triplet-int8's decision boundary); there the runtimes are held to agree
#: on the same pixels, in probabilities and labels.
def test_page_reads_large_jpegs_as_zoo(page, server, data_folder):
    for name in zoo.list():
        card = zoo.card(name)
        figures = _compare(page, server, data_folder, name, _large_images(data_folder, card.task == "change-detection"))
        REPORT.setdefault(name, {})["large_jpegs"] = figures
        print(name, "large", json.dumps(figures))
        assert figures["pixels_max_gap"] <= 1, f"{name}: inputs differ by {figures['pixels_max_gap']} grey levels"
        if _quantized(name):
            assert figures["runtime_max_prob_gap"] <= INT8_TOLERANCE, f"{name}: on the same pixels {figures}"
            assert figures["same_pixels_agreement"] == 1, f"{name}: on the same pixels {figures}"
            assert figures["max_prob_gap"] <= LARGE_INT8_GAP, f"{name}: probabilities differ by {figures['max_prob_gap']:.3f}"
        else:
            assert figures["agreement"] == 1, f"{name}: a large JPEG gets another label than zoo's: {figures['worst']}"
            assert figures["max_prob_gap"] <= PROB_GAP, f"{name}: probabilities differ by {figures['max_prob_gap']:.3f}"


def test_predict_takes_a_url_a_blob_and_an_image_bitmap(page, server, data_folder):
    """window.zoo.predict's three kinds of image give zoo's prediction; a wrong call says what is wrong."""
    path = "made/exif-6.jpg"
    expected = zoo.load("cnn", device="cpu").predict(data_folder / path)
    got = call(page, """
        const url = args[0] + '/data/' + args[1];
        const blob = await (await fetch(url)).blob();
        const bitmap = await createImageBitmap(blob);
        const out = [];
        for (const image of [url, blob, bitmap]) out.push(await zoo.predict('cnn', image));
        const refusals = [];
        for (const call of [() => zoo.predict('no-such-model', url), () => zoo.predict('changer', url), () => zoo.predict('cnn', 42)]) {
          try { await call(); refusals.push(null); } catch (error) { refusals.push(String(error.message || error)); }
        }
        return {out, refusals};""", server, path)
    for prediction in got["out"]:
        assert prediction["label"] == expected.label
        assert max(abs(prediction["probs"][k] - v) for k, v in expected.probs.items()) <= PROB_GAP
    unknown, count, kind = got["refusals"]
    assert unknown and "no-such-model" in unknown and "cnn" in unknown, unknown
    assert count and "takes 2 images" in count, count
    assert kind and "URL, a Blob" in kind, kind


def test_page_works_where_the_browser_keeps_nothing(server):
    """A browser that refuses every cache write (Chromium on a disk with too little space free; here a quota of one
    byte) still runs the page and its models: they are only not kept for offline use."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_BROWSER)
    driver = _chromium()
    try:
        driver.execute_cdp_cmd("Storage.overrideQuotaForOrigin", {"origin": server, "quotaSize": 1})
        _open_site(driver, server)
        got = _ship_in_the_page(driver)
        assert got == {"label": zoo.load("cnn", device="cpu").predict(SHIP).label, "from": "network"}
        warnings = [entry["message"] for entry in driver.get_log("browser") if "not kept" in entry["message"]]
        assert any("cnn" in message for message in warnings), warnings
    finally:
        driver.quit()


#: Each tab after a prediction: (tab, the file inputs and the images they get, the models picked).
TABS = [
    ("carplane", {"carplane-image-file": "cifar10/airplane.jpg"}, ["carplane-joint", "carplane-joint-int8", "carplane-linear",
                                                                   "carplane-linear-int8", "carplane-triplet", "carplane-triplet-int8"]),
    ("cifar10", {"cifar10-image-file": "cifar10/cat.jpg"}, ["cnn", "deformable-cnn"]),
    ("changer", {"changer-a-file": "pair/sunflower-a.jpg", "changer-b-file": "pair/sunflower-b.jpg"}, ["changer"]),
    ("resnet50-cifar8", {"resnet50-cifar8-image-file": "cifar10/horse.jpg"}, ["resnet50-cifar8"]),
]


def save_page(page, path: Path) -> None:
    """A screenshot of the whole page as it is now (the window as tall as the page)."""
    height = page.execute_script("window.scrollTo(0, 0); return document.documentElement.scrollHeight")
    page.set_window_size(1300, height + 140)
    page.save_screenshot(str(path))


def screenshot_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("ZOO_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("tab, files, models", TABS, ids=[t[0] for t in TABS])
def test_tab_predicts_in_the_page(page, tab, files, models, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not all(m in zoo.list() for m in models):
        pytest.skip(f"{tab}: not every model of the tab is installed")
    page.find_element(By.CSS_SELECTOR, f"button[data-tab=tab-{tab}]").click()
    for element, image in files.items():
        page.find_element(By.ID, element).send_keys(str(zoo.EXAMPLES / image))
    for name in models:
        box = page.find_element(By.ID, f"use-{name}")
        if not box.is_selected():
            box.click()
    page.find_element(By.ID, f"{tab}-run").click()
    wait = WebDriverWait(page, WAIT_SECONDS)
    for name in models:
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#result-{name} .latency, #result-{name} .error"))
        result = page.find_element(By.ID, f"result-{name}")
        assert not result.find_elements(By.CSS_SELECTOR, ".error"), result.text
        # The label shown is zoo's for the same image(s).
        images = [zoo.EXAMPLES / files[k] for k in files]
        model = zoo.load(name, device="cpu", refine=False) if tab == "changer" else zoo.load(name, device="cpu")
        assert result.find_element(By.CSS_SELECTOR, ".label").text == model.predict(*images).label
        assert result.find_element(By.CSS_SELECTOR, ".latency").text.split(" · ")[0] in ("WASM", "WEBGPU")
    if tab == "changer":
        assert "refined: false" in page.find_element(By.CSS_SELECTOR, "#result-changer .params").text
    shot = screenshot_folder(tmp_path) / f"web-{tab}.png"
    save_page(page, shot)
    assert shot.stat().st_size > 10_000


def test_changer_sliders_cut_the_pair_and_predict_as_zoo(page, tmp_path):
    """One photo and the sliders: A and B cut in the page, then the changer on them, as zoo on the same cut."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from zoo.geometry import pair_from_photo
    from zoo.preprocess import load_image

    if "changer" not in zoo.list():
        pytest.skip("no changer model installed")
    shift_x, shift_y, angle, scale = SLIDER_CHANGES[1]
    photo = zoo.EXAMPLES / "photos" / "sunflower.jpg"
    page.find_element(By.CSS_SELECTOR, "button[data-tab=tab-changer]").click()
    page.find_element(By.ID, "changer-photo-file").send_keys(str(photo))
    for slider, value in zip(("shift-x", "shift-y", "angle", "zoom"), (shift_x, shift_y, angle, scale)):
        page.execute_script("const s = document.getElementById(arguments[0]); s.value = arguments[1];"
                            "s.dispatchEvent(new Event('input'));", slider, value)
    page.execute_script("document.getElementById('result-changer').replaceChildren();")
    page.find_element(By.ID, "changer-make").click()
    WebDriverWait(page, WAIT_SECONDS).until(lambda d: d.execute_script("return window.zooPairMade"))
    page.find_element(By.ID, "changer-run").click()
    WebDriverWait(page, WAIT_SECONDS).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result-changer .latency"))
    # A slider keeps the nearest value of its steps: zoo cuts the pair with the values the page used.
    shift_x, shift_y, angle, scale = (float(page.find_element(By.ID, k).get_attribute("value"))
                                      for k in ("shift-x", "shift-y", "angle", "zoom"))
    a, b = pair_from_photo(load_image(photo), 256, shift_x, shift_y, angle, scale)
    expected = zoo.load("changer", device="cpu", refine=False).predict(a, b)
    assert page.find_element(By.CSS_SELECTOR, "#result-changer .label").text == expected.label
    save_page(page, screenshot_folder(tmp_path) / "web-changer-sliders.png")


def test_models_tab_lists_every_model(page, tmp_path):
    from selenium.webdriver.common.by import By

    page.find_element(By.CSS_SELECTOR, "button[data-tab=tab-models]").click()
    text = page.find_element(By.ID, "tab-models").text
    assert all(name in text for name in zoo.list())
    assert call(page, "return (await zoo.list()).map((m) => m.name);") == zoo.list()
    save_page(page, screenshot_folder(tmp_path) / "web-models.png")


def test_nothing_but_the_serving_address(page, server):
    """Every request the page made (the performance log: each one, before any host is resolved) went to the
    address serving the site: no CDN, no telemetry."""
    urls = []
    for entry in page.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert any(u.endswith("/models.json") for u in urls) and any("/ort/" in u for u in urls), \
        f"the performance log lacks the page's own requests: {urls[:20]}"
    elsewhere = sorted({u for u in urls if not u.startswith((server + "/", "blob:", "data:"))})
    assert not elsewhere, f"the page asked for {elsewhere}"


#: Chromium's software WebGPU (SwiftShader): an adapter on a machine without a GPU, to run the page's WebGPU build.
SOFTWARE_WEBGPU = ("--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
                   "--use-webgpu-adapter=swiftshader", "--enable-unsafe-swiftshader")
#: The models small enough for software WebGPU in a test's time.
WEBGPU_MODELS = ("cnn", "deformable-cnn", "changer")


def test_webgpu_build_runs_the_vectors(server):
    """Where the browser has a WebGPU adapter the page takes onnxruntime-web's WebGPU build (operators it lacks,
    such as DeformConv, run on WASM): the shipped vectors give the same outputs. The adapter here is SwiftShader,
    software: its latencies say nothing of a GPU's."""
    from selenium.webdriver.support.ui import WebDriverWait

    from bench.runtimes import probabilities, shipped_vectors

    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_BROWSER)
    driver = _chromium(SOFTWARE_WEBGPU)
    try:
        driver.get(server + "/")
        WebDriverWait(driver, 120).until(lambda d: d.execute_script("return window.zooReady || window.zooError"))
        backend = call(driver, "return await zoo.backend();")
        if backend["provider"] != "webgpu":
            pytest.skip("this Chromium offers no WebGPU adapter, not even SwiftShader's")
        for name in (n for n in WEBGPU_MODELS if n in zoo.list()):
            card = zoo.card(name)
            feeds, expected = shipped_vectors(name)
            got = call(driver, """
                const {provider, timing, rejected} = await zoo.load(args[0]);
                const inputs = Object.fromEntries(Object.entries(args[1]).map(([k, v]) =>
                  [k, {dims: v.dims, data: Uint8Array.from(atob(v.data), (c) => c.charCodeAt(0))}]));
                const out = await zoo.run(args[0], inputs);
                const model = (await zoo.list()).find((m) => m.name === args[0]);
                return {provider, timing, rejected, outputs: model.outputs.map((o) => out[o])};""",
                       name, {k: {"data": _b64(v), "dims": list(v.shape)} for k, v in feeds.items()})
            outputs = [np.asarray(o["data"], dtype=np.float64).reshape(o["dims"]) for o in got["outputs"]]
            gap = max(float(np.abs(m - t).max()) for m, t in
                      zip(probabilities(card.task, outputs), probabilities(card.task, expected)))
            REPORT.setdefault(name, {})["webgpu_swiftshader"] = {"provider": got["provider"], "vector_gap": gap,
                                                                 "rejected": got["rejected"]}
            print(name, "WebGPU (SwiftShader)", got["provider"], f"{gap:.2e}", got["rejected"])
            # A WebGPU session whose check fails is not used: the page runs that model on WASM, and says why.
            assert (got["provider"] == "webgpu") == (got["rejected"] is None), got
            assert gap <= card.tolerance, f"{name} on {got['provider']}: probabilities differ by {gap:.2e}"
    finally:
        driver.quit()


def test_page_works_offline_once_loaded(page, server, data_folder):
    """With the server gone, the page reloads from the browser and predicts with a model it loaded before.
    (It stops the server: the last test that needs it.)"""
    kept = call(page, """const shell = (await caches.keys()).find((name) => name.startsWith('zoo-shell-'));
        const urls = shell ? (await (await caches.open(shell)).keys()).map((r) => r.url) : [];
        return urls.some((url) => url.endsWith('.wasm'));""")
    if not kept:
        pytest.skip("Chromium kept none of the site for offline use: its profile's disk has too little space free "
                    "(a few GB; on a 300 GB disk, 3.4 GB free was too little and 5 GB enough)")
    server_stop()
    _open_site(page, server, wait=60)
    got = _ship_in_the_page(page)
    assert got == {"label": zoo.load("cnn", device="cpu").predict(SHIP).label, "from": "cache"}


def _cpu() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]} ({len(names)} cores)" if names else "this CPU"


def test_runtimes_doc_shows_the_saved_figures():
    """docs/runtimes.md shows the figures of docs/web-chromium.json as export.web.figures_table prints them."""
    from export.web import figures_table

    report = json.loads((ROOT / "docs" / "web-chromium.json").read_text())
    assert set(zoo.list()) <= set(report), "docs/web-chromium.json lacks a model: run the browser tests again"
    assert figures_table(report) in (ROOT / "docs" / "runtimes.md").read_text(), (
        "docs/runtimes.md differs from export.web.figures_table(docs/web-chromium.json)")


def test_report(tmp_path_factory):
    """Write the figures of the tests above where ZOO_WEB_REPORT says (the last test of this file)."""
    target = os.environ.get("ZOO_WEB_REPORT")
    if not target:
        pytest.skip("set ZOO_WEB_REPORT=FILE to keep the figures")
    Path(target).write_text(json.dumps(REPORT, indent=1, default=str) + "\n")
    assert REPORT
