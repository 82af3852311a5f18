"""python -m export NAME|all [--runs runs] [--portable] [--exporter dynamo|torchscript]
   python -m export triton OUTDIR [NAME ...]: a Triton Inference Server model repository of the zoo.
   python -m export quantize NAME [...]: NAME-int8 (static QDQ), installed only where it pays (export/quantize.py).
   python -m export share NAME NAME [...]: the tensors the models hold alike, stored once (export/share.py).
   python -m export restamp NAME|all [--license]: README, card digest and files after a card's content changed.
   python -m export precision NAME|all: each model's test accuracy in bf16 (OpenVINO), recorded in its card.
   python -m export index: zoo/models/index.json from the cards (after a model changed).
   python -m export release OUT: the wheel, every model file under its sha256, and index.json, for upload.
   python -m export web OUT: a static site that runs every model in the browser (onnxruntime-web; needs npm)."""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from training.recipes import RECIPES
from zoo.files import WEIGHTS_FILE
from zoo.registry import PACKAGE_MODELS

from .triton import write_repository


def triton(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m export triton",
                                     description="Write the zoo's models as a Triton Inference Server model repository.")
    parser.add_argument("out", type=Path, help="the repository folder (created; models in it are replaced)")
    parser.add_argument("names", nargs="*", help="models to include (default: every model in zoo.list())")
    args = parser.parse_args(argv)
    for folder in write_repository(args.out, args.names):
        print(f"wrote {folder}")


def quantize(argv: list[str]) -> None:
    from .quantize import MAX_INT8_ACCURACY_LOSS, MIN_SPEEDUP, merge_report, quantize_model

    parser = argparse.ArgumentParser(
        prog="python -m export quantize",
        description=f"Quantize installed models to NAME-int8 (static QDQ, calibrated on training inputs); install "
                    f"each only if >= {MIN_SPEEDUP}x faster at batch 1 and 64 and <= {MAX_INT8_ACCURACY_LOSS:.1%} less "
                    f"accurate than the float model, measured here.")
    parser.add_argument("names", nargs="+", help="installed float models to quantize")
    parser.add_argument("--out", type=Path, default=PACKAGE_MODELS,
                        help="where a variant that pays is installed (default: zoo/models)")
    parser.add_argument("--report", type=Path, help="JSON file the figures and decisions are merged into")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for both models (0: all cores)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    args = parser.parse_args(argv)
    for name in args.names:
        report = quantize_model(name, args.out, args.threads, args.rounds)
        if args.report:
            merge_report(args.report, name, report)
        verdict = f"installed {report['installed']}" if report["shipped"] else f"not shipped: {report['why_not']}"
        print(f"{name}: int8 {report['int8_test_accuracy']:.2%} vs float32 {report['float32_test_accuracy']:.2%}, "
              f"{report['speedup_b1']:.2f}x at batch 1, {report['speedup_b64']:.2f}x at batch 64; {verdict}")


def models_parser(command: str, description: str, names_help: str) -> argparse.ArgumentParser:
    """The parser of a subcommand that rewrites installed models: NAME [...] and --out."""
    parser = argparse.ArgumentParser(prog=f"python -m export {command}", description=description)
    parser.add_argument("names", nargs="+", help=names_help)
    parser.add_argument("--out", type=Path, default=PACKAGE_MODELS, help="models folder (default: zoo/models)")
    return parser


@contextmanager
def refusals(parser: argparse.ArgumentParser) -> Iterator[None]:
    """End the command with exit status 1 and the message of a build-time refusal or a ZooError raised inside (a
    model file that is not as its card says: nothing of that model was changed), as argparse reports a usage
    error."""
    from training.errors import BuildError
    from zoo.errors import ZooError

    try:
        yield
    except (BuildError, ZooError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")


def share(argv: list[str]) -> None:
    from zoo.files import SHARED_WEIGHTS_FILE

    from .share import share_weights

    parser = models_parser(
        "share",
        "Store the tensors that installed models hold with the same name, dtype, shape and bytes once, "
        "in a weight file that is the same in each model's folder and that each card lists; each "
        "model.safetensors keeps the rest and every graph is pointed at the new place. Again: a no-op.",
        "two installed models or more (e.g. resnet50-cifar8 carplane-linear)")
    parser.add_argument("--file", default=SHARED_WEIGHTS_FILE,
                        help=f"the shared file's name (default: {SHARED_WEIGHTS_FILE})")
    args = parser.parse_args(argv)
    with refusals(parser):
        print(share_weights(args.names, args.out, args.file).summary())


def restamp(argv: list[str]) -> None:
    from .stamp_card import restamp_models

    parser = models_parser(
        "restamp",
        "Bring installed models in line with their card.json after its content changed: the README "
        "re-rendered from the card, the card's digest stamped into the graph, the card's files "
        "re-hashed. Every file is checked against the card first; graphs change in their metadata only.",
        "installed models, or all")
    parser.add_argument("--license", action="store_true",
                        help="give a card with no license the one its provenance says (code, weights, data)")
    args = parser.parse_args(argv)
    with refusals(parser):
        for name, files in restamp_models(args.names, args.out, args.license).items():
            print(f"{name}: {', '.join(files) if files else 'up to date'}")


def precision(argv: list[str]) -> None:
    from .precision import PrecisionError, record_bf16
    from .share import list_models_in

    parser = models_parser(
        "precision",
        "Measure each installed model's test accuracy computed in bf16 (OpenVINO's default on CPUs with "
        "AVX512-BF16 or AMX) beside float32's (onnxruntime), on the whole test split, and record both in its card "
        "(re-stamped); zoo lets a runtime use bf16 only where they are within 0.1 point. Needs a CPU with bf16, "
        "OpenVINO and the training data.",
        "installed models, or all")
    args = parser.parse_args(argv)
    names = list_models_in(args.out) if args.names == ["all"] else args.names
    with refusals(parser):
        for name in names:
            try:
                figures = record_bf16(args.out / name)
            except PrecisionError as error:
                print(f"{name}: not measured: {error}")
                continue
            print(f"{name}: bf16 {figures['test_accuracy']:.2%} vs onnxruntime {figures['reference_test_accuracy']:.2%} on "
                  f"{figures['test_inputs']} test inputs; largest probability difference "
                  f"{figures['max_abs_probability_diff']:.1e}; {'used' if figures['used_by_auto'] else 'not used'} "
                  "by runtime='auto'")


def export(argv: list[str]) -> None:
    # Imported here: torch and the exporters load in seconds that the triton subcommand does not need.
    from training.checkpoint import read_metadata

    from .build import export_model, has_deformable
    from .onnx_export import EXPORTERS

    parser = argparse.ArgumentParser(prog="python -m export", description="Export trained checkpoints into the zoo.")
    parser.add_argument("name", choices=[*RECIPES, "all"], help="model to export, or all (or: triton OUTDIR)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder of run folders (default: runs/)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint to export instead of RUNS/NAME/model.safetensors")
    parser.add_argument("--out", type=Path, default=PACKAGE_MODELS, help="models folder (default: zoo/models)")
    parser.add_argument("--data", help="ImageFolder root whose test/ split validates the export")
    parser.add_argument("--exporter", choices=EXPORTERS, default="dynamo")
    parser.add_argument("--portable", action="store_true",
                        help="also write model-portable.onnx: deformable layers as GridSample + MatMul (no DeformConv)")
    args = parser.parse_args(argv)
    names = list(RECIPES) if args.name == "all" else [args.name]
    for name in names:
        checkpoint = args.checkpoint or args.runs / name / WEIGHTS_FILE
        if not checkpoint.is_file():
            parser.error(f"{checkpoint} does not exist; train it first: python -m training {name}")
        portable = args.portable or (args.name == "all" and has_deformable(read_metadata(checkpoint)))
        folder = export_model(checkpoint, args.out, args.data, args.exporter, portable)
        print(f"{name}: wrote {folder}")


def release(argv: list[str]) -> None:
    from .release import release as write_release

    parser = argparse.ArgumentParser(
        prog="python -m export release",
        description="Write a release into OUT as it is uploaded to a static host (a GitHub release, a Hugging Face "
                    "Hub repository): the wheel, every model file named by its sha256, and index.json.")
    parser.add_argument("out", type=Path, help="the release folder (created)")
    args = parser.parse_args(argv)
    wheel, _ = write_release(args.out)
    files = [p for p in args.out.iterdir() if p.is_file() and p != wheel]
    print(f"wrote {wheel} ({wheel.stat().st_size / 1e6:.1f} MB) and {len(files)} model files + index "
          f"({sum(p.stat().st_size for p in files) / 1e6:.1f} MB) into {args.out}")


def web(argv: list[str]) -> None:
    from .web import write_site

    parser = argparse.ArgumentParser(
        prog="python -m export web",
        description="Write a static site that runs the zoo's models in the visitor's browser on onnxruntime-web "
                    "(pinned by web/package-lock.json, installed with npm ci when missing): index.html, its scripts, "
                    "onnxruntime-web's files and every model's self-contained ONNX file. Serve OUT with any static "
                    "host, e.g. python -m http.server -d OUT.")
    parser.add_argument("out", type=Path, help="the site folder (created; a site written there before is replaced)")
    parser.add_argument("names", nargs="*", help="models to include (default: every model on this machine)")
    args = parser.parse_args(argv)
    with refusals(parser):
        catalog = write_site(args.out, args.names or None)
    models = catalog["models"]
    print(f"wrote {args.out}: onnxruntime-web {catalog['onnxruntime_web']}, {len(models)} models "
          f"({sum(m['bytes'] for m in models) / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> None:
    from .release import write_index

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["index"]:
        print(f"wrote {write_index()}")
    elif argv[:1] == ["release"]:
        release(argv[1:])
    elif argv[:1] == ["triton"]:
        triton(argv[1:])
    elif argv[:1] == ["web"]:
        web(argv[1:])
    else:
        commands = {"quantize": quantize, "share": share, "restamp": restamp, "precision": precision}
        if argv[:1] and argv[0] in commands:
            commands[argv[0]](argv[1:])
        else:
            export(argv)
        write_index()  # the package's index follows its models' files


if __name__ == "__main__":
    main()
