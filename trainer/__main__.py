"""`python -m trainer {train,evaluate,sweep}`: the trainer's command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trainer.config import ARCHITECTURES, OPTIMIZERS, TrainConfig

DEFAULT_DATA = Path("../shared/data/chest_xray")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return int(args.func(args) or 0)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a kebab-case option with its default shown."""
    defaults = TrainConfig()
    parser.add_argument("--architecture", choices=list(ARCHITECTURES), default=defaults.architecture)
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="width multiplier")
    parser.add_argument(
        "--weights", type=str, default=None, help="ImageNet backbone .h5; omit to train from scratch"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument("--head-learning-rate", type=float, default=defaults.head_learning_rate)
    parser.add_argument("--head-epochs", type=int, default=defaults.head_epochs)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=defaults.fine_tune_learning_rate)
    parser.add_argument(
        "--epochs",
        dest="fine_tune_epochs",
        type=int,
        default=defaults.fine_tune_epochs,
        help="fine-tuning epochs after the head-only phase",
    )
    parser.add_argument("--fine-tune-from", default=defaults.fine_tune_from)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument(
        "--patience", dest="early_stopping_patience", type=int, default=defaults.early_stopping_patience
    )
    parser.add_argument(
        "--min-recall",
        type=float,
        default=defaults.min_recall,
        help="threshold rule: highest threshold keeping validation recall >= this",
    )
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--limit", type=int, default=None, help="use only N training files (quick runs)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train a model into a run directory",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kermany-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="run directory, e.g. runs/NAME")
    add_config_options(parser)
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from trainer.train import train  # TensorFlow loads only when a command needs it

    if args.weights and not Path(args.weights).is_file():
        sys.exit(f"--weights {args.weights} does not exist; see ../shared/weights/README.md")
    train(config_from_args(args), args.data, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
