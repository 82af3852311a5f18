"""Command-line options shared by the `zoo` command and the demo (`python app.py`): argparse types and flags, so
that neither imports the other."""
from __future__ import annotations

import argparse


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags: `python app.py` and `zoo demo` take the same."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="open a public Gradio share link")
    parser.add_argument("--api", action="store_true",
                        help="also serve zoo's HTTP API (as `zoo serve`: /v1/..., /docs, /metrics, /readyz) from "
                             "the same server; the key guards the API's paths")
    parser.add_argument("--api-key", help="with --api: require 'Authorization: Bearer KEY' on the API's paths "
                                          "(default: $ZOO_API_KEY)")
    parser.add_argument("--no-auth", action="store_true",
                        help="listen beyond the loopback although the demo's pages (and Gradio's endpoints, which "
                             "run the models) check no key; with --api and no key, the API is open too")
    parser.add_argument("--download", action="store_true",
                        help="first download every model this machine lacks (otherwise the demo shows the models here)")
