"""`python -m edge score`: score X-ray files and folders into a CSV, offline.

Every file gets one row; a file that cannot be read or decoded gets a `rejected` row with the reason,
never a crash, so a batch of a thousand files is not lost to one broken export. The CSV goes to
stdout, or is written atomically to `--csv` (a reader never sees half a file).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from edge import formats
from edge.bundle import BundleError
from edge.files import atomic_write_bytes
from edge.preprocess import ImageError
from edge.runtime import RuntimeUnavailableError
from edge.screener import INTENDED_USE, STATUS_REJECTED, Screener, ScreenerOptions, default_model_dir

log = logging.getLogger(__name__)

#: `uncertain`: a PNEUMONIA result in the bundle's uncertain-refer band (still a referral); last, so
#: readers of the earlier columns are unchanged.
COLUMNS = ("path", "status", "label", "probability", "threshold", "calibration", "model_sha256", "detail")
COLUMNS += ("uncertain",)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `score` subcommand; its handler is `args.func(args) -> exit code`."""
    parser = subparsers.add_parser(
        "score",
        help="score X-ray files and folders into a CSV",
        description=f"Score chest X-ray files (JPEG, PNG, DICOM) offline. {INTENDED_USE}",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders (recursive)")
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="model bundle folder")
    parser.add_argument(
        "--out", "--csv", dest="csv", type=Path, default=None, help="the CSV file to write (None: stdout)"
    )
    parser.add_argument(
        "--num-threads", type=_positive, default=None, help="TFLite threads (None: the runtime chooses)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score `args.paths` with the bundle in `args.model`; 0 when every file got a row."""
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.csv is not None and not args.csv.parent.is_dir():
        print(f"error: the folder for --out {args.csv} does not exist; create it first", file=sys.stderr)
        return 2
    try:
        options = ScreenerOptions(num_threads=args.num_threads, heatmap=False)
        screener = Screener.from_path(args.model, options)
    except (BundleError, RuntimeUnavailableError, ValueError) as e:
        print(
            f"error: cannot use the model bundle {args.model}: {e}\n"
            "fix: point --model at a verified bundle folder (holding bundle.json and model.tflite).",
            file=sys.stderr,
        )
        return 1
    files, skipped = find_images(args.paths)
    rows = [score_file(screener, path) for path in files]
    text = format_csv(rows)
    if args.csv is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(args.csv, text.encode("utf-8"))
    rejected = sum(row["status"] == STATUS_REJECTED for row in rows)
    if skipped:
        print(
            f"skipped {len(skipped)} files in the folders that are not JPEG, PNG or DICOM "
            f"(by name and content), e.g. {skipped[0]}",
            file=sys.stderr,
        )
    print(f"scored {len(rows)} files ({rejected} rejected). {INTENDED_USE}", file=sys.stderr)
    return 0


def find_images(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(files to score, files skipped): files named directly, whatever their suffix, plus the files
    under folders that `edge.formats` takes for X-rays, as the kiosk would (a DICOM named after its
    UID included); folder contents sorted."""
    chosen: list[Path] = []
    skipped: list[Path] = []
    for path in paths:
        if not path.is_dir():
            chosen.append(path)
            continue
        for found in sorted(p for p in path.rglob("*") if p.is_file()):
            (chosen if _is_candidate(found) else skipped).append(found)
    return chosen, skipped


def _is_candidate(path: Path) -> bool:
    if formats.suffix_of(path.name) in formats.ACCEPTED_SUFFIXES:
        return True  # named as an X-ray: scored, and reported if it is not one
    try:
        with path.open("rb") as handle:
            head = handle.read(formats.SNIFF_BYTES)
    except OSError:
        return False
    return formats.is_candidate(path.name, head)


def score_file(screener: Screener, path: Path) -> dict[str, str]:
    """One CSV row for one file; unreadable or undecodable files become `rejected` rows."""
    row = {
        "path": str(path),
        "status": STATUS_REJECTED,
        "label": "",
        "probability": "",
        "threshold": f"{screener.bundle.threshold:.4f}",
        "calibration": screener.bundle.calibration.description,
        "model_sha256": screener.bundle.model_sha256,
        "uncertain": "",
    }
    try:
        assessment = screener.assess(path.read_bytes())
    except OSError as e:
        return {**row, "detail": f"unreadable: {e.strerror or e}"}
    except ImageError as e:
        return {**row, "detail": f"{e.reason}: {e}"}
    if assessment.probability is not None:
        row["probability"] = f"{assessment.probability:.4f}"
    return {
        **row,
        "status": assessment.status,
        "label": assessment.label or "",
        "detail": assessment.detail,
        "uncertain": str(assessment.uncertain).lower() if assessment.label else "",
    }


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def format_csv(rows: Iterable[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
