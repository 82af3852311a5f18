"""The `zoo` command: list, info, predict and export-onnx, with clear messages and exit codes."""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

from . import batch
from . import card
from .batch import BatchError
from .engines import RUNTIME_ENV, RUNTIMES
from .errors import ZooError
from .limits import BATCH_WAIT, MAX_BATCH, MAX_QUEUE
from .options import add_demo_arguments, non_negative, positive
from .model import load, save_onnx
from .tasks import Prediction
from . import hub, registry
from .loopback import RAY_LOOPBACK_ENVIRONMENT, loopback
from .registry import SUMMARY_HEADER, UNAVAILABLE, model_cards, model_summaries, models_root, unavailable_models
from .release import DISTRIBUTION
from .runtime import DEVICES

EXIT_ERROR = 1  # argparse exits 2 on usage errors
def cmd_list(_: argparse.Namespace) -> int:
    cards = model_cards()  # read once for the table and the reasons
    rows = model_summaries(cards)
    if not rows:
        print(f"zoo: no models in the package or in {models_root()} (ZOO_HOME).", file=sys.stderr)
        return 0
    table = [SUMMARY_HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_HEADER))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for name, reason in unavailable_models(cards).items():
        print(f"zoo: {name} is {UNAVAILABLE}: {reason}", file=sys.stderr)
    if all(row[1] == UNAVAILABLE for row in rows):
        print(f"zoo: error: no model's card can be read (in the package or in {models_root()}, ZOO_HOME).",
              file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(card(args.name).to_dict(), indent=2))
    return 0


def describe(prediction: Prediction, top: int) -> str:
    """The prediction as text: the label, the top labels, and the changer's changes and parameters."""
    lines = [f"{prediction.label}  ({prediction.score:.2%})"]
    for label, p in sorted(prediction.probs.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {label:<32} {p:.4f}")
    if prediction.changes is not None:
        lines.append("changes: " + ", ".join(f"{name} {p:.4f}" for name, p in prediction.changes.items()))
    if prediction.params is not None:
        lines.append("params:  " + ", ".join(f"{name} {value:+.4f}" for name, value in prediction.params.items()))
    if prediction.refined is not None:
        how = "refined by aligning the views" if prediction.refined else "the network's (the alignment did not hold)"
        lines.append(f"params are {how}; alignment score {prediction.alignment_score:.4f}")
    return "\n".join(lines)


def many_inputs(paths: list[str], n_inputs: int) -> bool:
    """Whether the arguments name many inputs (several images, a folder, a glob, the changer's CSV of pairs)
    rather than one prediction to print."""
    def pattern(path: str) -> bool:
        return Path(path).is_dir() or (glob.has_magic(path) and not Path(path).exists())

    if n_inputs == 1:
        return len(paths) > 1 or pattern(paths[0])
    return (len(paths) == 1 and paths[0].lower().endswith(".csv")) or any(map(pattern, paths))


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help=f"onnxruntime, openvino (installed apart), or auto (default, or ${RUNTIME_ENV}): "
                             "OpenVINO where it measured faster for the model on this CPU")


def cmd_predict(args: argparse.Namespace) -> int:
    model = load(args.name, device=args.device, refine=not args.no_refine, runtime=args.runtime)
    n_inputs = len(model.card.inputs)
    if args.out or args.resume or many_inputs(args.images, n_inputs):
        if args.resume and not args.out:
            raise BatchError("--resume continues an --out file; name it with --out.")
        if n_inputs == 1:
            items = batch.image_paths(args.images)
        elif len(args.images) == 1 and args.images[0].lower().endswith(".csv"):
            items = batch.csv_pairs(args.images[0])
        else:
            raise BatchError(f"model {args.name!r} takes {n_inputs} images: give them as A B, or many pairs as a "
                             "two-column CSV file (a, b).")
        progress = batch.run(model, items, args.out, args.resume)
        return 0 if progress.failed == 0 else EXIT_ERROR
    prediction = model.predict(*args.images)
    if args.json:
        print(json.dumps({"model": args.name, "device": model.device, "runtime": model.runtime,
                          **prediction.to_dict()}, indent=2))
    else:
        print(describe(prediction, args.top))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    names = list(registry.index()) if args.all else args.names  # --all: the release's models, not your own
    if not names:
        raise ZooError("name the models to download, or --all.")
    unknown = [name for name in names if name not in registry.index()]
    if unknown:
        raise ZooError(f"not models of this release: {', '.join(unknown)}; available: {', '.join(registry.index())}.")
    if args.to:
        transfer = hub.write_mirror(names, args.to)
        print(f"wrote {len(names)} model(s) into {args.to}: set ZOO_MODELS_URL={args.to.resolve()} where they are needed")
    else:
        transfer = hub.Transfer()
        for name in names:
            if registry.source(name) != registry.EMBEDDED:
                transfer.add(registry.fetch(name, refresh=True))
        print(f"{', '.join(names)}: ready in {models_root()} or the package")
    print(f"downloaded {transfer.downloaded_bytes / 1e6:.1f} MB, copied {transfer.copied_bytes / 1e6:.1f} MB "
          "from files already here", file=sys.stderr)
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    home = models_root()
    if args.clear is not None:
        removed = hub.clear(home, args.clear or None)
        print(f"removed {', '.join(removed) or 'nothing'} from {home}")
        return 0
    models = hub.cached_models(home)
    print(f"models home: {home}")
    for model in models:
        kind = ("downloaded" if model.complete else "partly downloaded") if model.fetched else "your own"
        print(f"  {model.name:<24} {model.bytes / 1e6:8.1f} MB  {kind}")
    print(f"  {'total':<24} {sum(m.bytes for m in models) / 1e6:8.1f} MB")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from . import app
    except ImportError as exc:
        raise ZooError(f"zoo demo needs the app extra ({exc.name} is missing): pip install '{DISTRIBUTION}[app]'.") from None
    app.run(args.parser, args)
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    path = save_onnx(args.name, args.out, portable=args.portable)
    print(path)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    extra = "ray" if args.ray else "serve"
    try:
        from .guard import API_KEY_ENV
        from .serve import preload_names, serve

        if args.ray:
            if not args.address and loopback(args.host):
                for key, value in RAY_LOOPBACK_ENVIRONMENT.items():
                    os.environ.setdefault(key, value)
            from . import ray as on_ray
    except ImportError as exc:
        raise ZooError(f"zoo serve{' --ray' * args.ray} needs the {extra} extra ({exc.name} is missing): "
                       f"pip install '{DISTRIBUTION}[{extra}]'.") from None
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.ray:
        on_ray.start(args.host, args.port, api_key, args.no_auth, args.device, args.replicas, args.threads,
                     args.address, preload=preload_names(args.preload), max_batch=args.max_batch,
                     batch_wait=args.batch_wait_ms / 1000, max_queue=args.max_queue, runtime=args.runtime)
    else:
        serve(args.host, args.port, api_key, args.no_auth, args.device, preload=args.preload,
              max_batch=args.max_batch, batch_wait=args.batch_wait_ms / 1000, max_queue=args.max_queue,
              access_log=args.access_log, log_json=args.log_json, runtime=args.runtime)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo", description="Run the zoo's ONNX models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the models: name, task, input, test accuracy, size, and where their files are "
                                "(embedded, cached, download, local)",
                   description="List every model: name, task, input, test accuracy, size, and where its files are "
                               "(embedded, cached, download, local). A model whose card cannot be read is listed as "
                               "unavailable, and why is said on stderr; the exit status is 0 when at least one "
                               "model's card was read (or there are no models), 1 when none could be."
                   ).set_defaults(run=cmd_list)
    info = sub.add_parser("info", help="a model's card, as JSON")
    info.add_argument("name")
    info.set_defaults(run=cmd_info)
    predict = sub.add_parser(
        "predict", help="predict images: one file, or files, folders and globs (the changer: A B, or a CSV of pairs)",
        usage="zoo predict [-h] [--json] [--top N] [--device {auto,cpu,cuda}] [--runtime RUNTIME] [--no-refine] "
              "[--out FILE [--resume]] "
              "NAME PATH [PATH ...]",
        description="One image (the changer: A B) prints its prediction. Several paths, a folder (searched "
                    "recursively), a glob, or the changer's two-column CSV of pairs predict every image: one row "
                    "each (path, label, score, probs; or path and error) as JSON lines on stdout or in --out, "
                    "progress on stderr; the exit status is 0 only if every input was predicted.")
    predict.add_argument("name", metavar="NAME")
    predict.add_argument("images", nargs="+", metavar="PATH", help="image files, folders or globs; the changer: A B, or pairs.csv")
    predict.add_argument("--out", type=Path, metavar="FILE", help="write one row per input to FILE (.jsonl or .csv)")
    predict.add_argument("--resume", action="store_true", help="skip inputs already predicted in --out and append")
    predict.add_argument("--json", action="store_true", help="print the prediction as JSON")
    predict.add_argument("--top", type=positive, default=5, metavar="N", help="how many labels to show (default 5)")
    predict.add_argument("--device", default="auto", choices=DEVICES)
    add_runtime_argument(predict)
    predict.add_argument("--no-refine", action="store_true",
                         help="the changer: the network's estimate alone, without refining it by aligning the views")
    predict.set_defaults(run=cmd_predict)
    export = sub.add_parser("export-onnx", help="write a model as one self-contained ONNX file, for any runtime",
                            description="Write model NAME as one ONNX file with its weights inside and its labels, "
                                        "input layout and resize rule in metadata_props; prints the path written.")
    export.add_argument("name", metavar="NAME")
    export.add_argument("out", metavar="OUT", help="the .onnx file to write (replaced), or a folder to write NAME.onnx in")
    export.add_argument("--portable", action="store_true",
                        help="only ops every common runtime implements (deformable-cnn: no DeformConv)")
    export.set_defaults(run=cmd_export_onnx)
    served = sub.add_parser("serve", help="serve the models as an HTTP JSON API (OpenAPI docs at /docs)",
                            description="Serve every installed model over HTTP: GET /v1/models, GET /v1/models/NAME, "
                                        "POST /v1/models/NAME/predict (multipart, or one image as the body), "
                                        "GET /livez, /readyz, /metrics (Prometheus), /docs. Concurrent requests "
                                        "for a model are batched into one onnxruntime run. Limits and their "
                                        "variables: docs/security.md.")
    served.add_argument("--host", default="127.0.0.1", help="address to listen on (default: the loopback)")
    served.add_argument("--port", type=int, default=8000)
    served.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $ZOO_API_KEY); needed "
                                          "beyond the loopback")
    served.add_argument("--no-auth", action="store_true", help="serve beyond the loopback without an API key")
    served.add_argument("--device", default="auto", choices=DEVICES)
    add_runtime_argument(served)
    served.add_argument("--preload", nargs="+", default=(), metavar="NAME",
                        help="load (and warm) these models at startup, or 'all'; /readyz answers 200 once they are")
    served.add_argument("--max-batch", type=positive, default=MAX_BATCH, metavar="N",
                        help=f"the most images in one onnxruntime run (default {MAX_BATCH})")
    served.add_argument("--batch-wait-ms", type=non_negative, default=BATCH_WAIT * 1000, metavar="MS",
                        help=f"how long a batch waits for requests still being decoded (default {BATCH_WAIT * 1000:g})")
    served.add_argument("--max-queue", type=positive, default=MAX_QUEUE, metavar="N",
                        help=f"requests admitted per model at once; more get 503 with Retry-After (default {MAX_QUEUE})")
    served.add_argument("--access-log", action="store_true", help="log one line per request (with its X-Request-ID)")
    served.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    on_ray = served.add_argument_group("on a Ray cluster (the ray extra)")
    on_ray.add_argument("--ray", action="store_true", help="serve through Ray Serve: the same routes, on replicas")
    on_ray.add_argument("--replicas", type=positive, default=1, help="replicas of the API (default 1)")
    on_ray.add_argument("--threads", type=positive, default=1, help="onnxruntime threads (and CPUs) per replica")
    on_ray.add_argument("--address", help="the cluster to join ('auto', HOST:6379); default: start a local one")
    served.set_defaults(run=cmd_serve)
    download = sub.add_parser(
        "download", help="download models into the models home, or write them into a folder for a mirror",
        description="Fetch models into the models home ($ZOO_HOME, else a per-user cache), re-checking the sha256 "
                    "of files already there; with --to DIR, write them as a release (each file under its sha256, "
                    "and index.json) into DIR, for ZOO_MODELS_URL=DIR on a machine without internet.")
    download.add_argument("names", nargs="*", metavar="NAME")
    download.add_argument("--all", action="store_true", help="every model of this release")
    download.add_argument("--to", type=Path, metavar="DIR", help="write the release layout into DIR (created)")
    download.set_defaults(run=cmd_download)
    cache = sub.add_parser("cache", help="what the models home holds, and its size; --clear removes downloads")
    cache.add_argument("--clear", nargs="*", metavar="NAME",
                       help="remove these downloaded models (none named: all, and unfinished downloads); "
                            "models of your own stay")
    cache.set_defaults(run=cmd_cache)
    demo = sub.add_parser("demo", help="the Gradio demo in the browser (the app extra)",
                          description="Serve the Gradio demo: the models on this machine, on http://127.0.0.1:7860.")
    demo.set_defaults(run=cmd_demo, parser=demo)
    add_demo_arguments(demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
