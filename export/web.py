"""python -m export web OUT: the zoo as a static site that runs every model in the visitor's browser.

The page (web/src/) runs onnxruntime-web, copied from the npm package that web/package-lock.json pins (npm ci
installs it into web/node_modules when it is missing or differs from the lock): nothing is fetched from a CDN
when the page runs. Each model is its self-contained ONNX file (`zoo.save_onnx`; `deformable-cnn` with its
DeformConv, which onnxruntime-web's WASM build implements), named by its sha256 so that a browser's cache
never serves an old one, and described in models.json. Any static host serves OUT as it is.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import zoo
from zoo import registry

from .errors import ExportError

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
SOURCES = WEB / "src"
#: The files of onnxruntime-web the page loads: the WASM build, and the WebGPU build where the browser has WebGPU.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
             "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
ORT_PACKAGE = "onnxruntime-web"


def node_modules() -> Path:
    """web/node_modules as web/package-lock.json pins it: `npm ci` when it is missing or differs from the lock."""
    lock = WEB / "package-lock.json"
    installed = WEB / "node_modules" / ".package-lock.json"
    if not lock.is_file():
        raise ExportError(f"{lock} is missing; restore it from git (it pins onnxruntime-web's version).")
    if not installed.is_file() or _locked_version(installed) != _locked_version(lock):
        npm = shutil.which("npm")
        if npm is None:
            raise ExportError("npm is not on PATH; install Node.js 20 or later with npm (e.g. apt-get install nodejs "
                              "npm), then run python -m export web OUT/ again.")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=WEB,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise ExportError(f"npm ci in {WEB} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return WEB / "node_modules"


def _locked_version(lock: Path) -> str | None:
    packages = json.loads(lock.read_text()).get("packages", {})
    return packages.get(f"node_modules/{ORT_PACKAGE}", {}).get("version")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: An int8 graph's integer kernels round each layer their own way: its check's bound (docs/runtimes.md).
INT8_CHECK_TOLERANCE = 5e-2


def write_check(name: str, out: Path) -> None:
    """The first of model `name`'s shipped test vectors as JSON (inputs as base64, the expected probabilities):
    the page runs it on a WebGPU session before trusting it, and takes WASM where the outputs differ."""
    import base64

    import numpy as np

    from zoo.tasks import TASKS

    from .vectors import shipped_vectors

    card = zoo.card(name)
    feeds, outputs = shipped_vectors(name)
    check = {
        "inputs": {k: {"dims": [1, *v.shape[1:]], "data": base64.b64encode(np.ascontiguousarray(v[:1]).tobytes()).decode()}
                   for k, v in feeds.items()},
        "probabilities": [p[0].tolist() for p in TASKS[card.task].probabilities([o[:1] for o in outputs])],
        "tolerance": INT8_CHECK_TOLERANCE if "quantized_from" in card.extra else card.tolerance,
    }
    out.write_text(json.dumps(check) + "\n")


def model_entry(name: str, models: Path) -> dict[str, object]:
    """Write model `name`'s self-contained file into `models` and return what models.json says of it."""
    card = zoo.card(name)
    written = zoo.save_onnx(name, models / f"{name}.onnx")
    digest = _sha256(written)
    file = written.with_name(f"{name}-{digest[:12]}.onnx")
    written.replace(file)
    check = models / f"{name}-check.json"
    write_check(name, check)
    return {
        "name": name,
        "task": card.task,
        "group": card.demo or name,
        "description": card.description,
        "version": card.version,
        "labels": list(card.labels),
        "inputs": [{"name": i.name, "height": i.height, "width": i.width, "resize": i.resize} for i in card.inputs],
        "outputs": list(card.outputs),
        "changes": list(card.changes),
        "param_names": list(card.param_names),
        "session_config": card.extra.get("session_config", {}),
        "test_accuracy": card.headline_accuracy,
        "file": f"models/{file.name}",
        "check": f"models/{check.name}",
        "bytes": file.stat().st_size,
        "sha256": digest,
    }


def write_site(out: Path, names: list[str] | None = None) -> dict[str, object]:
    """Write the site into `out` (created; a site there before is replaced) and return its models.json."""
    unknown = sorted(set(names or ()) - set(zoo.list()))
    if unknown:
        raise ExportError(f"no model named {', '.join(unknown)}; the zoo has {', '.join(zoo.list())}.")
    if out.exists() and not (out / "models.json").is_file() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not a site this command wrote (no models.json); give an empty or "
                          "new folder.")
    chosen = [n for n in zoo.list() if (names is None or n in names) and registry.source(n) != registry.FETCHABLE]
    if not chosen:
        raise ExportError("none of the models is on this machine; run zoo download --all first.")
    ort = node_modules() / ORT_PACKAGE
    version = json.loads((ort / "package.json").read_text())["version"]
    if out.exists():
        shutil.rmtree(out)
    (out / "ort").mkdir(parents=True)
    (out / "models").mkdir()
    for name in ORT_FILES:
        shutil.copy2(ort / "dist" / name, out / "ort" / name)
    for source in SOURCES.iterdir():
        if source.is_file():
            shutil.copy2(source, out / source.name)
    catalog = {"onnxruntime_web": version, "models": [model_entry(name, out / "models") for name in chosen]}
    (out / "models.json").write_text(json.dumps(catalog, indent=1) + "\n")
    # The service worker's cache is named by the build's content: a new site replaces what browsers kept.
    build = hashlib.sha256()
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "sw.js" and "models" not in p.parts):
        build.update(path.name.encode() + path.read_bytes())
    build.update((out / "models.json").read_bytes())
    sw = out / "sw.js"
    sw.write_text(sw.read_text().replace("zoo-shell-BUILD", f"zoo-shell-{build.hexdigest()[:12]}"))
    return catalog


def _labels_note(figures: dict[str, float]) -> str:
    """How many large JPEGs got zoo's label, where not all did."""
    return "" if figures["agreement"] == 1 else f" ({figures['agreement']:.0%} zoo's label)"


def figures_table(report: dict[str, object]) -> str:
    """The figures docs/runtimes.md shows of a report that tests/test_web.py wrote (ZOO_WEB_REPORT=FILE)."""
    backend = report["backend"]
    browser = re.search(r"(?:Headless)?Chrome/[\d.]+", str(backend.get("browser", ""))) if isinstance(backend, dict) else None
    lines = [f"onnxruntime-web {backend['version']}, {backend['provider'].upper()}, {backend['threads']} threads, SIMD, "
             f"{'' if backend['crossOriginIsolated'] else 'not '}cross-origin isolated; "
             f"{browser.group(0) if browser else 'Chromium'} on {report.get('cpu', 'this CPU')}:", "",
             "| model | file | load: download + session | latency | test vectors | zoo's label | largest "
             "probability difference | inputs identical | same inputs in onnxruntime | large JPEGs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, figures in report.items():
        if not isinstance(figures, dict) or "images" not in figures:
            continue
        images, large, timing = figures["images"], figures["large_jpegs"], figures["load"]["timing"]
        lines.append(f"| `{name}` | {figures['bytes'] / 1e6:.1f} MB | {timing['fetch_ms']:.0f} + "
                     f"{timing['session_ms']:.0f} ms | {images['latency_ms_median']:.1f} ms | "
                     f"{figures['vector_gap']:.1e} | {images['agreement']:.1%} of {images['images']} | "
                     f"{images['max_prob_gap']:.1e} | {images['inputs_pixel_exact']:.1%} | "
                     f"{images['runtime_max_prob_gap']:.1e} | {large['max_prob_gap']:.1e}{_labels_note(large)} |")
    webgpu = [(name, f["webgpu_swiftshader"]) for name, f in report.items()
              if isinstance(f, dict) and "webgpu_swiftshader" in f]
    if webgpu:
        lines += ["", "On WebGPU (Chromium's SwiftShader adapter: software, so no speed figures): " + "; ".join(
            f"`{name}` on {w['provider'].upper()}, test vectors within {w['vector_gap']:.1e}"
            + (f" (WebGPU refused: {w['rejected']})" if w["rejected"] else "") for name, w in webgpu) + "."]
    return "\n".join(lines) + "\n"
