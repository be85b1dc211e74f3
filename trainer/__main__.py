"""`pneumoedge-trainer` (or `python -m trainer`): train the kiosk's model, evaluate it, compare settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.kermany import check_layout
from lab.cli_options import HelpFormatter, add_command, add_shift_options, parse_command, run_command
from trainer.config import OPTIMIZERS
from trainer.film_subspace_fit import FitSettings, fit, measure_folder
from trainer.options import add_config_options, config_from_args

DEFAULT_DATA = Path("../shared/data/chest_xray")
#: The sweep's small backbone: MobileNet v1 alpha 0.25 with ImageNet weights (see ../shared/weights).
SWEEP_WEIGHTS = "../shared/weights/mobilenet_2_5_224_tf_no_top.h5"
#: TrainConfig fields the sweep varies itself, so it takes no single-value option for them.
GRID_FIELDS = frozenset({"optimizer", "batch_size", "seed", "head_learning_rate", "fine_tune_learning_rate"})


def main(argv: list[str] | None = None) -> int:
    adders = (_add_train, _add_evaluate, _add_sweep, _add_folds, _add_film_subspace)
    args = parse_command("pneumoedge-trainer", __doc__, adders, argv)
    return run_command(args, (FileNotFoundError, ValueError))


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "train",
        "train a model into a run directory",
        _train,
        description="Train into a run directory: model.keras, config.json, run.json, split.csv, plots.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kermany-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="run directory, e.g. runs/NAME")
    parser.add_argument(
        "--monitor",
        type=Path,
        default=None,
        help="folder with NORMAL/ and PNEUMONIA/ (e.g. ../shared/data/site-calibration) whose AUC is "
        "logged after every epoch; it is never trained on and chooses nothing",
    )
    add_config_options(parser)


def _train(args: argparse.Namespace) -> int:
    _check_weights(args.weights)
    config = config_from_args(args)
    _check_data("train", args.data, args.monitor)
    from trainer.train import train  # TensorFlow loads only once the options are known to be good

    train(config, args.data, args.out, args.monitor)  # a missing folder: scan_split says which layout
    return 0


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "evaluate",
        "evaluate a run's model at its stored threshold",
        _evaluate,
        description=(
            "Evaluate a run's model at its stored threshold: by default on the run's own held-out "
            "validation patients (split.csv), or with --split on every image of DATA/SPLIT in the "
            "Kermany layout. Writes metrics.json, summary.md, predictions.csv and PNG plots."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--run", type=Path, required=True, help="finished run directory, e.g. runs/NAME")
    parser.add_argument(
        "--data", type=Path, default=None, help="Kermany-layout folder (default: the run's data_root)"
    )
    parser.add_argument(
        "--split",
        default=None,
        help="folder under --data to evaluate in full, e.g. test (default: the run's validation patients)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: RUN/eval-NAME)")
    add_shift_options(
        parser,
        fullres_help="full-aspect films, paired by name with DATA/train",
        suite_help="validation films (stratified, seeded) the robustness suite re-acquires; 0: no suite",
    )


def _evaluate(args: argparse.Namespace) -> int:
    from trainer.evaluate import ShiftOptions, evaluate

    evaluate(
        args.run, args.data, args.split, args.out, ShiftOptions(args.site, args.fullres, args.suite_films)
    )
    return 0


def _add_folds(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "folds",
        "leave-batch-out folds: a shift evaluation inside the training split",
        _folds,
        description=(
            "Train one run per fold (NORMAL films split by acquisition batch IM-* vs NORMAL2-IM-*, "
            "pneumonia by patient) into OUT/fold-NAME and write OUT/folds.json with the worse fold."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kermany-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the fold runs, e.g. runs/folds")
    add_config_options(parser, skip={"val_fraction"})


def _folds(args: argparse.Namespace) -> int:
    _check_weights(args.weights)
    config = config_from_args(args)
    _check_data("folds", args.data)
    from trainer.folds import run_folds

    run_folds(config, args.data, args.out)
    return 0


def _add_film_subspace(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "film-subspace",
        "fit the kiosk's film-layout check on training films and measure it on other films",
        _film_subspace,
        description=(
            "Fit edge.film_subspace on the training split (components from most patients, the limit "
            "from the others, unchanged and re-acquired), write OUT, and print the refusals on each "
            "--measure folder (unchanged and re-acquired); those folders choose nothing."
        ),
        formatter_class=HelpFormatter,
    )
    defaults = FitSettings()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kermany-layout folder")
    parser.add_argument("--out", type=Path, default=Path("edge/film_subspace.npz"), help="file to write")
    parser.add_argument(
        "--measure", type=Path, nargs="*", default=[], help="folders of genuine films to measure"
    )
    parser.add_argument("--components", type=int, default=defaults.components, help="principal components")
    parser.add_argument("--margin", type=float, default=defaults.margin, help="limit = margin x held-out max")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="held-out patient draw")


def _film_subspace(args: argparse.Namespace) -> int:
    _check_data("film-subspace", args.data)
    settings = FitSettings(components=args.components, margin=args.margin, seed=args.seed)
    subspace, figures = fit(args.data, settings)
    for folder in args.measure:
        figures += measure_folder(subspace, folder)
    subspace.save(args.out)
    print(f"film-layout limit {subspace.limit:.4f} ({settings.components} components), written to {args.out}")
    for measured in figures:
        print(measured.line())
    return 0


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands,
        "sweep",
        "compare optimizers, learning rates and batch sizes on a small budget",
        _sweep,
        description=(
            "Train every optimizer x learning rate x batch size x seed on a small budget and write "
            "OUT/sweep.csv, OUT/sweep_runs.csv and OUT/sweep.md (validation metrics, spread over seeds, "
            "wall time). Finished runs in --runs-dir with the same settings are reused."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kermany-layout folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the tables, e.g. reports/sweep")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/sweep"), help="one run directory per run")
    parser.add_argument(
        "--optimizers", nargs="+", choices=OPTIMIZERS, default=list(OPTIMIZERS), help="optimizers to compare"
    )
    parser.add_argument(
        "--learning-rates", nargs="+", type=float, default=[1e-2, 1e-3], help="head-phase learning rates"
    )
    parser.add_argument(
        "--fine-tune-ratio",
        type=float,
        default=0.1,
        help="fine-tuning learning rate = this x the head learning rate (the shipped model: 1e-4 / 1e-3)",
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 32], help="batch sizes to compare")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2], help="at least two, for the spread")
    add_config_options(parser, skip=GRID_FIELDS)
    parser.set_defaults(
        architecture="mobilenet",
        alpha=0.25,
        weights=SWEEP_WEIGHTS,
        head_epochs=1,
        fine_tune_epochs=2,
        limit=1500,
    )


def _sweep(args: argparse.Namespace) -> int:
    _check_weights(args.weights)
    if len(args.seeds) < 2:
        sys.exit("--seeds needs at least two seeds: the spread over seeds is the stability measure")
    config = config_from_args(args)
    from trainer.sweep import grid, sweep

    points = grid(args.optimizers, args.learning_rates, args.batch_sizes)
    sweep(config, args.data, args.out, args.runs_dir, points, args.seeds, args.fine_tune_ratio)
    return 0


def _check_data(command: str, data: Path, monitor: Path | None = None) -> None:
    """Refuse a data folder (or --monitor folder) not in the Kermany layout before TensorFlow loads."""
    try:
        check_layout(data, "train")
        if monitor is not None:
            check_layout(monitor.parent, monitor.name)
    except FileNotFoundError as e:
        sys.exit(f"{command}: {e}")


def _check_weights(weights: str | None) -> None:
    if weights and not Path(weights).is_file():
        sys.exit(f"--weights {weights} does not exist; see ../shared/weights/README.md")


if __name__ == "__main__":
    sys.exit(main())
