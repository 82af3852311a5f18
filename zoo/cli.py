"""The `zoo` command: list, info, predict and export-onnx, with clear messages and exit codes."""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

from . import batch
from . import card as read_card
from .batch import BatchError
from .errors import ZooError
from .model import Prediction, load, save_onnx
from .registry import list_models, models_root

EXIT_ERROR = 1  # argparse exits 2 on usage errors
SUMMARY_HEADER = ("name", "task", "input", "test acc", "size")


def model_summaries() -> list[tuple[str, str, str, str, str]]:
    """One row per installed model, in registry order (SUMMARY_HEADER's columns); the app's Models tab shows the same."""
    rows = []
    for name in list_models():
        c = read_card(name)
        inputs = " + ".join(f"{s.height}x{s.width}" for s in c.inputs)
        acc = f"{c.headline_accuracy:.2%}" if c.headline_accuracy is not None else "-"
        rows.append((name, c.task, inputs, acc, f"{c.size_bytes / 1e6:.1f} MB"))
    return rows


def cmd_list(_: argparse.Namespace) -> int:
    rows = model_summaries()
    if not rows:
        print(f"zoo: no models in {models_root()} (ZOO_HOME changes the folder).", file=sys.stderr)
        return 0
    table = [SUMMARY_HEADER, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(SUMMARY_HEADER))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(read_card(args.name).to_dict(), indent=2))
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
    return "\n".join(lines)


def many_inputs(paths: list[str], n_inputs: int) -> bool:
    """Whether the arguments name many inputs (several images, a folder, a glob, the changer's CSV of pairs)
    rather than one prediction to print."""
    def pattern(path: str) -> bool:
        return Path(path).is_dir() or (glob.has_magic(path) and not Path(path).exists())

    if n_inputs == 1:
        return len(paths) > 1 or pattern(paths[0])
    return (len(paths) == 1 and paths[0].lower().endswith(".csv")) or any(map(pattern, paths))


def cmd_predict(args: argparse.Namespace) -> int:
    model = load(args.name, device=args.device)
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
        print(json.dumps({"model": args.name, "device": model.device, **prediction.to_dict()}, indent=2))
    else:
        print(describe(prediction, args.top))
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    path = save_onnx(args.name, args.out, portable=args.portable)
    print(path)
    return 0


#: What a local Ray cluster needs to keep every Ray process on 127.0.0.1 and send no usage statistics; read when
#: ray is imported. (Ray's switch is named after Windows and macOS, where the loopback is its default.)
RAY_LOOPBACK_ENVIRONMENT = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def cmd_serve(args: argparse.Namespace) -> int:
    extra = "ray" if args.ray else "serve"
    try:
        from .serve import API_KEY_ENV, loopback, serve

        if args.ray:
            if not args.address and loopback(args.host):
                for key, value in RAY_LOOPBACK_ENVIRONMENT.items():
                    os.environ.setdefault(key, value)
            from . import ray as on_ray
    except ImportError as exc:
        raise ZooError(f"zoo serve{' --ray' * args.ray} needs the {extra} extra ({exc.name} is missing): "
                       f"pip install 'zoo[{extra}]'.") from None
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.ray:
        on_ray.start(args.host, args.port, api_key, args.no_auth, args.device, args.replicas, args.threads,
                     args.address)
    else:
        serve(args.host, args.port, api_key, args.no_auth, args.device)
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo", description="Run the zoo's ONNX models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the installed models: name, task, input, test accuracy, size").set_defaults(run=cmd_list)
    info = sub.add_parser("info", help="a model's card, as JSON")
    info.add_argument("name")
    info.set_defaults(run=cmd_info)
    predict = sub.add_parser(
        "predict", help="predict images: one file, or files, folders and globs (the changer: A B, or a CSV of pairs)",
        usage="zoo predict [-h] [--json] [--top N] [--device {auto,cpu,cuda}] [--out FILE [--resume]] NAME PATH [PATH ...]",
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
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
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
                                        "POST /v1/models/NAME/predict, GET /healthz. Concurrent requests for a "
                                        "model are batched into one onnxruntime run.")
    served.add_argument("--host", default="127.0.0.1", help="address to listen on (default: the loopback)")
    served.add_argument("--port", type=int, default=8000)
    served.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $ZOO_API_KEY); needed "
                                          "beyond the loopback")
    served.add_argument("--no-auth", action="store_true", help="serve beyond the loopback without an API key")
    served.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    on_ray = served.add_argument_group("on a Ray cluster (the ray extra)")
    on_ray.add_argument("--ray", action="store_true", help="serve through Ray Serve: the same routes, on replicas")
    on_ray.add_argument("--replicas", type=positive, default=1, help="replicas of the API (default 1)")
    on_ray.add_argument("--threads", type=positive, default=1, help="onnxruntime threads (and CPUs) per replica")
    on_ray.add_argument("--address", help="the cluster to join ('auto', HOST:6379); default: start a local one")
    served.set_defaults(run=cmd_serve)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
