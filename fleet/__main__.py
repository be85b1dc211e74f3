"""`python -m fleet {pool,train,leave-site-out,promote}`: from many kiosks' exports to a promoted model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer.__main__ import HelpFormatter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_pool(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return int(args.func(args) or 0)


def _add_pool(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pool",
        help="verify kiosk exports and add their confirmed films to a sharded pool",
        description=(
            "Verify every export (zip, manifest, checksums) and add the new exports' new films to "
            "OUT as TFRecord shards, with records.csv (site, pseudonymous patient keys) and pool.json. "
            "A refused export stops the run before anything is written."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("exports", nargs="+", type=Path, help="kiosk confirmed-dataset zips")
    parser.add_argument("--out", type=Path, required=True, help="pool folder, e.g. pool/")
    parser.add_argument("--input-size", type=int, default=224, help="model input stored per film")
    parser.add_argument("--shard-films", type=int, default=1024, help="films per TFRecord shard")
    parser.set_defaults(func=_pool)


def _pool(args: argparse.Namespace) -> int:
    from fleet.pool import ExportError, pool

    try:
        state = pool(args.exports, args.out, args.input_size, args.shard_films)
    except (ExportError, FileNotFoundError) as e:
        sys.exit(f"pool: {e}")
    print(f"pool {args.out}: {state['films']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
