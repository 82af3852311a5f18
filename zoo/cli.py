"""The `zoo` command: list, info and predict, with clear messages and exit codes."""
from __future__ import annotations

import argparse
import json
import sys

from . import card as read_card
from .errors import ZooError
from .model import load
from .registry import list_models

EXIT_ERROR = 1  # argparse exits 2 on usage errors


def cmd_list(_: argparse.Namespace) -> int:
    rows = [("name", "task", "input", "test acc", "size")]
    for name in list_models():
        c = read_card(name)
        inputs = " + ".join(f"{s.height}x{s.width}" for s in c.inputs)
        acc = f"{c.headline_accuracy:.2%}" if c.headline_accuracy is not None else "-"
        rows.append((name, c.task, inputs, acc, f"{c.size_bytes / 1e6:.1f} MB"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(read_card(args.name).to_dict(), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    model = load(args.name, device=args.device)
    prediction = model.predict(*args.images)
    if args.json:
        print(json.dumps({"model": args.name, "device": model.device, **prediction.to_dict()}, indent=2))
    else:
        print(f"{prediction.label}  ({prediction.score:.2%})")
        for label, p in sorted(prediction.probs.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {label:<32} {p:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="zoo", description="Run the zoo's ONNX models.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped models").set_defaults(run=cmd_list)
    info = sub.add_parser("info", help="a model's card")
    info.add_argument("name")
    info.set_defaults(run=cmd_info)
    predict = sub.add_parser("predict", help="predict one image (or a pair, for the changer)")
    predict.add_argument("name")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--json", action="store_true", help="print the prediction as JSON")
    predict.add_argument("--top", type=int, default=5, help="how many labels to show (default 5)")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    predict.set_defaults(run=cmd_predict)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ZooError as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
