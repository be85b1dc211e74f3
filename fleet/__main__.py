"""`pneumoedge-fleet` (or `python -m fleet`): from many kiosks' exports to a promoted model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection
from pathlib import Path

from edge.bundle import BundleError
from edge.signing import SigningError
from fleet.pool import ExportError
from fleet.trust import TrustError
from lab.cli_options import HelpFormatter, add_command, parse_command, run_command
from trainer.options import add_config_options, config_from_args

#: What a user causes and can fix: a refused export or bundle, an unknown key, a missing folder.
USER_ERRORS = (ExportError, TrustError, SigningError, BundleError, FileNotFoundError, ValueError)


def main(argv: list[str] | None = None) -> int:
    adders = (_add_pool, _add_train, _add_leave_site_out, _add_promote)
    args = parse_command("pneumoedge-fleet", __doc__, adders, argv)
    return run_command(args, USER_ERRORS)


def _add_pool(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "pool",
        "verify kiosk exports and add their confirmed films to a sharded pool",
        _pool,
        description=(
            "Verify every export (zip, manifest, checksums, the kiosk's signature and that its key is "
            "the one the trust file holds for that kiosk) and add the new exports' new films to "
            "OUT as TFRecord shards, with records.csv (site, pseudonymous patient keys) and pool.json. "
            "A refused export stops the run before anything is written."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("exports", nargs="+", type=Path, help="kiosk confirmed-dataset zips")
    parser.add_argument("--out", type=Path, required=True, help="pool folder, e.g. pool/")
    parser.add_argument("--input-size", type=int, default=224, help="model input stored per film")
    parser.add_argument("--shard-films", type=int, default=1024, help="films per TFRecord shard")
    parser.add_argument(
        "--trusted-kiosks",
        type=Path,
        metavar="FILE",
        help='trust file, JSON {"KIOSK_ID": "SHA256:<hex>"} from provisioning records (for signed exports)',
    )
    parser.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="record a kiosk not in the trust file on its first export (then refuse any other key for it)",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="pool unsigned exports from kiosks older than signing (recorded in pool.json)",
    )


def _pool(args: argparse.Namespace) -> int:
    from fleet.pool import pool
    from fleet.trust import TrustedKiosks

    if args.trust_on_first_use and args.trusted_kiosks is None:
        sys.exit("pool: --trust-on-first-use needs --trusted-kiosks FILE to record the kiosks in")
    file = args.trusted_kiosks
    trusted = TrustedKiosks.load(file, args.trust_on_first_use) if file else None
    state = pool(args.exports, args.out, args.input_size, args.shard_films, trusted, args.allow_unsigned)
    print(f"pool {args.out}: {state['films']}")
    return 0


def _add_train(commands: argparse._SubParsersAction) -> None:
    _add_pool_training(
        commands,
        "train",
        "train on a pool, on one machine or many (TF_CONFIG)",
        _train,
        description=(
            "Train the trainer's recipe on a pool with MultiWorkerMirroredStrategy. Run the same command "
            "on every node, each with its own TF_CONFIG; without TF_CONFIG it trains on this machine. "
            "The chief writes the run directory (as `python -m trainer train`); a restarted worker "
            "resumes from the last finished epoch (OUT/backup)."
        ),
        out_help="run directory, e.g. runs/pooled",
        skip={"limit"},
    )


def _add_pool_training(
    commands: argparse._SubParsersAction,
    name: str,
    summary: str,
    func: Callable[[argparse.Namespace], int],
    description: str,
    out_help: str,
    skip: Collection[str],
) -> None:
    """A command that trains on a pool: --pool, --out and the trainer's options, as `trainer train` has."""
    parser = add_command(
        commands, name, summary, func, description=description, formatter_class=HelpFormatter
    )
    parser.add_argument("--pool", type=Path, required=True, help="pool folder from `fleet pool`")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    add_config_options(parser, skip=skip)


def _train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from fleet.distributed import train_pool

    train_pool(config, args.pool, args.out)
    return 0


def _add_leave_site_out(commands: argparse._SubParsersAction) -> None:
    _add_pool_training(
        commands,
        "leave-site-out",
        "train without each site in turn and test on it",
        _leave_site_out,
        description=(
            "One training run per site of the pool (OUT/without-SITE), tested on the held-out site; "
            "writes OUT/leave-site-out.json with each site's AUC and specificity at the recall floor, "
            "and the worst site. Needs at least two sites."
        ),
        out_help="folder for the fold runs",
        skip={"limit", "val_fraction"},
    )


def _leave_site_out(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from fleet.leave_site_out import run_leave_site_out, site_folds
    from fleet.records import read_records

    site_folds(read_records(args.pool))  # refuse a one-site pool before TensorFlow starts
    run_leave_site_out(config, args.pool, args.out)
    return 0


def _add_promote(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "promote",
        "compare a candidate bundle with the field's on the same films; write the decision into it",
        _promote,
        description=(
            "Score the locked set and every shift set with both bundles through the kiosk's Screener; "
            "recommend promotion only if the candidate's recall is non-inferior everywhere and its "
            "primary figure is better on the locked set (paired bootstrap 95%% intervals). The decision "
            "and the evidence go into the candidate's bundle.json (`promotion`). Exit status 0: "
            "promote; 3: refused."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--candidate", type=Path, required=True, help="the new bundle (is written to)")
    parser.add_argument("--field", type=Path, required=True, help="the bundle kiosks run now")
    parser.add_argument("--locked", type=Path, required=True, help="locked set: NORMAL/ and PNEUMONIA/")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a shift set (NORMAL/, PNEUMONIA/), e.g. site=../shared/data/site-calibration; repeatable",
    )
    parser.add_argument("--margin", type=float, default=0.02, help="recall non-inferiority margin")
    parser.add_argument("--primary", choices=("auc", "f1"), default="auc", help="figure that must improve")
    parser.add_argument("--boot", type=int, default=2000, help="paired bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def _promote(args: argparse.Namespace) -> int:
    from fleet.promote import Rule, promote

    shift = {}
    for item in args.shift:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            sys.exit(f"promote: --shift takes NAME=DIR, got {item!r}")
        shift[name] = Path(folder)
    section = promote(
        args.candidate, args.field, args.locked, shift, Rule(args.margin, args.primary, args.boot, args.seed)
    )
    print(f"{section['decision'].upper()}: " + " ".join(section["reasons"]))
    return 0 if section["decision"] == "promote" else 3


if __name__ == "__main__":
    sys.exit(main())
