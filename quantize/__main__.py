"""`pneumoedge-quantize` (or `python -m quantize`): bundles from a training run, and their benchmark."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge.bundle import BundleError
from lab.cli_options import add_command, add_shift_options, parse_command, run_command
from quantize.settings import VARIANTS, ExportSettings, PruneSettings

DEFAULT_DATA = Path("../shared/data/chest_xray")
#: With the logger's name: export and benchmark log from several modules.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    adders = (_add_export, _add_ood, _add_benchmark)
    args = parse_command("pneumoedge-quantize", __doc__, adders, argv, LOG_FORMAT)
    logging.getLogger("edge.screener").setLevel(logging.WARNING)  # one line per film would drown the log
    return run_command(args, (FileNotFoundError, ValueError, BundleError))


def _variants(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _add_export(commands: argparse._SubParsersAction) -> None:
    defaults = PruneSettings()
    parser = add_command(commands, "export", "convert a training run into model bundles", _export)
    parser.add_argument("--run", type=Path, required=True, help="training run directory, e.g. runs/NAME")
    parser.add_argument("--out", type=Path, required=True, help="bundle prefix, e.g. models/mobilenetv2")
    parser.add_argument("--variants", type=_variants, default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--data", type=Path, default=None, help="data root; default: the run's data_root")
    parser.add_argument("--calibration-images", type=int, default=200, help="training images for int8")
    parser.add_argument("--ood-images", type=int, default=1000, help="training images for the ood gate")
    parser.add_argument(
        "--sparsity", type=float, default=defaults.sparsity, help="pruned kernels' zero share"
    )
    parser.add_argument("--prune-epochs", type=int, default=defaults.epochs, help="fine-tune epochs")
    parser.add_argument(
        "--prune-learning-rate", type=float, default=defaults.learning_rate, help="fine-tune Adam rate"
    )
    parser.add_argument(
        "--prune-min-weights", type=int, default=defaults.min_weights, help="smaller layers stay dense"
    )
    parser.add_argument("--threads", type=int, default=2, help="TFLite threads while scoring")
    parser.add_argument(
        "--adapt-batchnorm",
        type=Path,
        default=None,
        help="a site's films (NORMAL/, PNEUMONIA/; labels unread): re-estimate BatchNorm statistics on them "
        "(AdaBN) before converting; refit the head afterwards with `python -m edge calibrate`",
    )


def _export(args: argparse.Namespace) -> int:
    settings = ExportSettings(
        variants=args.variants,
        calibration_images=args.calibration_images,
        ood_images=args.ood_images,
        threads=args.threads,
        data_root=args.data,
        adapt_batchnorm=args.adapt_batchnorm,
        prune=PruneSettings(
            sparsity=args.sparsity,
            epochs=args.prune_epochs,
            learning_rate=args.prune_learning_rate,
            min_weights=args.prune_min_weights,
        ),
    )
    from quantize.export import export  # TensorFlow loads only once the options are known to be valid

    for bundle in export(args.run, args.out, settings):
        logging.getLogger("quantize").info("wrote %s", bundle.root)
    return 0


def _add_ood(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands, "ood", "recompute the ood section of existing bundles (models unchanged)", _ood
    )
    parser.add_argument("--run", type=Path, required=True, help="the run the bundles were exported from")
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="bundle folders")
    parser.add_argument("--data", type=Path, default=None, help="data root; default: the run's data_root")
    parser.add_argument(
        "--ood-images",
        type=int,
        default=1000,
        help="training images for mean/std (and again for the threshold)",
    )
    parser.add_argument("--threads", type=int, default=2, help="TFLite threads while scoring")


def _ood(args: argparse.Namespace) -> int:
    settings = ExportSettings(ood_images=args.ood_images, threads=args.threads, data_root=args.data)
    from quantize.export import recalibrate_ood

    recalibrate_ood(args.run, args.models, settings)
    return 0


def _add_benchmark(commands: argparse._SubParsersAction) -> None:
    parser = add_command(
        commands, "benchmark", "score and time bundles on the same images; write a report", _benchmark
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data root (or a split folder)")
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="bundle folders")
    parser.add_argument("--out", type=Path, required=True, help="report folder, e.g. reports/NAME")
    parser.add_argument(
        "--split",
        type=Path,
        default=None,
        help="sha256,label,path list relative to --data; default: every image of --data's "
        "NORMAL/ and PNEUMONIA/ folders",
    )
    parser.add_argument(
        "--runs", type=int, default=100, help="timed runs per model, runtime and thread count"
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to time")
    add_shift_options(
        parser,
        fullres_help="full-aspect films, paired by name with --fullres-copies",
        suite_help="held-out films (stratified, seeded) the robustness suite re-acquires; 0: no suite",
        fullres_copies_help="their 224 px copies (default: DATA/train)",
    )
    parser.add_argument(
        "--runtimes", nargs="+", default=None, help="runtimes to time (default: every installed one)"
    )


def _benchmark(args: argparse.Namespace) -> int:
    from quantize.benchmark import BenchmarkSettings, run_benchmark, shift_sets

    runtimes = tuple(args.runtimes) if args.runtimes else None
    settings = BenchmarkSettings(runs=args.runs, threads=tuple(args.threads), runtimes=runtimes)
    shift = shift_sets(args.data, args.split, args.site, args.fullres, args.fullres_copies, args.suite_films)
    run_benchmark(args.data, args.models, args.out, args.split, settings, shift)
    return 0


if __name__ == "__main__":
    sys.exit(main())
