"""`pneumoedge` (or `python -m edge`): the kiosk's command line, one module of edge/commands/ a command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from edge import INTENDED_USE
from edge.commands import audit, calibrate, identity, score, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pneumoedge",
        description=f"PneumoEdge: offline pediatric chest X-ray pneumonia screening. {INTENDED_USE}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    score.register(subparsers)
    serve.register(subparsers)
    calibrate.register(subparsers)
    identity.register(subparsers)
    audit.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
