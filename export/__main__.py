"""python -m export NAME|all [--runs runs] [--portable] [--exporter dynamo|torchscript]
   python -m export triton OUTDIR [NAME ...]: a Triton Inference Server model repository of the zoo."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.recipes import RECIPES
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
        checkpoint = args.checkpoint or args.runs / name / "model.safetensors"
        if not checkpoint.is_file():
            parser.error(f"{checkpoint} does not exist; train it first: python -m training {name}")
        portable = args.portable or (args.name == "all" and has_deformable(read_metadata(checkpoint)))
        folder = export_model(checkpoint, args.out, args.data, args.exporter, portable)
        print(f"{name}: wrote {folder}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["triton"]:
        triton(argv[1:])
    else:
        export(argv)


if __name__ == "__main__":
    main()
