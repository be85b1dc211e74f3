"""The training options on a command line: one option per TrainConfig field, and the config back.

`trainer train`, `folds` and `sweep` and fleet's pooled training take the same options from here, so
a setting has one name, one default (the dataclass's) and one check everywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection

from edge.intensity import METHODS
from trainer.config import ARCHITECTURES, FINE_TUNE_FROM, OPTIMIZERS, SCHEDULES, TrainConfig


def add_config_options(parser: argparse.ArgumentParser, skip: Collection[str] = ()) -> None:
    """Every TrainConfig field (except those in `skip`) as a kebab-case option with its default shown."""
    defaults = TrainConfig()
    options: list[tuple[str, dict]] = [
        (
            "--architecture",
            {"choices": list(ARCHITECTURES), "default": defaults.architecture, "help": "backbone"},
        ),
        ("--alpha", {"type": float, "default": defaults.alpha, "help": "width multiplier"}),
        (
            "--weights",
            {
                "type": str,
                "default": None,
                "help": "ImageNet backbone .h5; without it the model trains from scratch",
            },
        ),
        (
            "--seed",
            {"type": int, "default": defaults.seed, "help": "sets the split, initialisation, augmentation"},
        ),
        (
            "--val-fraction",
            {"type": float, "default": defaults.val_fraction, "help": "share of patients held out"},
        ),
        ("--batch-size", {"type": int, "default": defaults.batch_size, "help": "training batch size"}),
        ("--optimizer", {"choices": OPTIMIZERS, "default": defaults.optimizer, "help": "sgd: momentum 0.9"}),
        (
            "--head-learning-rate",
            {"type": float, "default": defaults.head_learning_rate, "help": "phase 1 rate"},
        ),
        ("--head-epochs", {"type": int, "default": defaults.head_epochs, "help": "phase 1: head only"}),
        (
            "--fine-tune-learning-rate",
            {"type": float, "default": defaults.fine_tune_learning_rate, "help": "phase 2 rate"},
        ),
        (
            "--epochs",
            {
                "dest": "fine_tune_epochs",
                "type": int,
                "default": defaults.fine_tune_epochs,
                "help": "fine-tuning epochs after the head-only phase",
            },
        ),
        (
            "--fine-tune-from",
            {"default": None, "help": f"first layer fine-tuned; default per architecture {FINE_TUNE_FROM}"},
        ),
        ("--dropout", {"type": float, "default": defaults.dropout, "help": "before the sigmoid unit"}),
        ("--weight-decay", {"type": float, "default": defaults.weight_decay, "help": "adamw only"}),
        (
            "--schedule",
            {
                "choices": SCHEDULES,
                "default": defaults.schedule,
                "help": "fine-tuning learning-rate schedule",
            },
        ),
        (
            "--label-smoothing",
            {"type": float, "default": defaults.label_smoothing, "help": "targets 0/1 become s/2, 1-s/2"},
        ),
        (
            "--mixup",
            {"type": float, "default": defaults.mixup, "help": "Beta(a, a) mixup of film pairs; 0 is off"},
        ),
        (
            "--train-batchnorm",
            {
                "action": argparse.BooleanOptionalAction,
                "default": defaults.train_batchnorm,
                "help": "update BatchNorm statistics while fine-tuning (default: frozen, ImageNet's)",
            },
        ),
        (
            "--acquisition",
            {
                "action": argparse.BooleanOptionalAction,
                "default": defaults.acquisition,
                "help": "acquisition augmentation: resampling, JPEG, gamma, blur/sharpen, noise",
            },
        ),
        (
            "--intensity",
            {
                "choices": METHODS,
                "default": defaults.intensity,
                "help": "intensity standardisation of every model input (clahe needs opencv)",
            },
        ),
        (
            "--min-recall",
            {
                "type": float,
                "default": defaults.min_recall,
                "help": "threshold rule: highest threshold keeping validation recall >= this",
            },
        ),
        (
            "--input-size",
            {"type": int, "default": defaults.input_size, "help": "model input, pixels per side"},
        ),
        (
            "--limit",
            {"type": int, "default": None, "help": "use only N training files, stratified; default all"},
        ),
    ]
    for flag, kwargs in options:
        dest = kwargs.get("dest", flag[2:].replace("-", "_"))
        if dest not in skip:
            parser.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed options describe; a bad combination exits with the dataclass's reason."""
    fields = TrainConfig.__dataclass_fields__
    try:
        return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    except ValueError as e:
        sys.exit(f"invalid training option: {e}")
