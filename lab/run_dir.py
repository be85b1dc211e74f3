"""The training run directory: the one contract between trainer/, quantize/ and their tests.

`python -m trainer train` writes a run, `python -m trainer evaluate` and `python -m quantize export`
read it, through this module alone, so a run trained on another machine can be exported here and
the test fixtures forge runs exactly as the trainer writes them. What a run holds:

- `config.json`: the training configuration (trainer/config.py); `min_recall` and `seed` are read.
- `split.csv`: `subset,label,patient,sha256,path`, one row per image, paths relative to the data
  root (the data may move), patients never on both sides.
- the Keras model, in the file that `run.json` names (`model_file`), and `head_only.keras`: the model
  after the head-only phase, where fine-tuning started (benchmarks/weight_interpolation.py).
- `run.json`, written last (a run without it is unfinished): how the run was made (command, commit,
  data manifest, weights) and what the later stages need (`REQUIRED_RUN_KEYS`, `threshold`,
  `class_weights`).
- `history.csv`, `val_predictions.csv`, `metrics.json`, `train.log` and plots, for people.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from edge.files import atomic_write_text
from edge.intensity import NONE
from edge.kermany import LABELS, Sample
from edge.provenance import git_commit, sha256_file

RUN_FILE = "run.json"
CONFIG_FILE = "config.json"
SPLIT_FILE = "split.csv"
HISTORY_FILE = "history.csv"
HEAD_ONLY_FILE = "head_only.keras"
SPLIT_FIELDS = ("subset", "label", "patient", "sha256", "path")
SUBSETS = ("train", "val")
#: What run.json must say for a run to be evaluated or exported.
REQUIRED_RUN_KEYS = ("feature_layer", "input_size", "labels", "model_file")


@dataclass(frozen=True)
class LabelledFile:
    """One image file: its path relative to the data root, label index (0 NORMAL, 1 PNEUMONIA), sha256."""

    path: str
    label: int
    sha256: str


@dataclass(frozen=True)
class SplitRow(LabelledFile):
    """A row of split.csv: a labelled file, its patient and which side of the split it is on."""

    subset: str
    patient: str

    def sample(self, data_root: Path) -> Sample:
        """The row as a Sample under `data_root` (wherever the data lives now)."""
        return Sample(Path(data_root) / self.path, self.label, self.patient, self.sha256)


@dataclass(frozen=True)
class RunDir:
    """A finished run: its metadata, its training configuration and its patient split."""

    root: Path
    run: dict[str, Any]
    config: dict[str, Any]
    split: dict[str, list[SplitRow]]

    @property
    def model_path(self) -> Path:
        return self.root / self.run["model_file"]

    @property
    def head_only_path(self) -> Path:
        return self.root / HEAD_ONLY_FILE

    @property
    def history_path(self) -> Path:
        return self.root / HISTORY_FILE

    @property
    def feature_layer(self) -> str:
        return str(self.run["feature_layer"])

    @property
    def input_size(self) -> int:
        return int(self.run["input_size"])

    @property
    def labels(self) -> list[str]:
        return list(self.run["labels"])

    @property
    def intensity(self) -> str:
        """The run's intensity standardisation (edge.intensity); runs older than the option had none."""
        return str(self.config.get("intensity", NONE))

    @property
    def min_recall(self) -> float:
        return float(self.config["min_recall"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def threshold_rule(self) -> str:
        return threshold_rule(self.min_recall)

    @property
    def data_root(self) -> Path:
        return Path(self.run["data_root"])

    @property
    def class_weights(self) -> dict[int, float]:
        """The loss weights the run trained with, by label index (pruning fine-tunes with the same)."""
        weights = self.run.get("class_weights")
        if not isinstance(weights, dict) or set(weights) != set(self.labels):
            raise ValueError(
                f"{self.root / RUN_FILE} lacks class_weights for {self.labels}; re-run the trainer"
            )
        return {self.labels.index(label): float(value) for label, value in weights.items()}


class RunSettings(Protocol):
    """The training settings run.json repeats (trainer.config.TrainConfig has them)."""

    @property
    def weights(self) -> str | None: ...

    @property
    def min_recall(self) -> float: ...

    @property
    def input_size(self) -> int: ...

    @property
    def feature_layer(self) -> str: ...


def threshold_rule(min_recall: float) -> str:
    """How the run chose its threshold, in the one wording run.json and RunDir use."""
    return f"highest threshold with validation recall >= {min_recall}"


def run_record(
    program: str,
    started: float,
    settings: RunSettings,
    source: Mapping[str, Any],
    training: Mapping[str, Any],
    threshold: float,
    model_file: str,
) -> dict[str, Any]:
    """run.json's content, in one key order whichever command (`trainer`, `fleet`) trained the run.

    `started` is the run's time.monotonic() start; `source` (machine, data) follows the provenance
    keys, `training` (counts, class weights, epochs) follows the backbone weights.
    """
    return {
        "command": " ".join([Path(sys.executable).name, "-m", program, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        **source,
        "weights": str(settings.weights) if settings.weights else None,
        "weights_sha256": sha256_file(settings.weights) if settings.weights else None,
        **training,
        "threshold": threshold,
        "threshold_rule": threshold_rule(settings.min_recall),
        "labels": list(LABELS),
        "input_size": settings.input_size,
        "feature_layer": settings.feature_layer,
        "model_file": model_file,
    }


def write_split(path: Path, train: Sequence[Sample], val: Sequence[Sample], data_root: Path) -> None:
    """split.csv for these samples, paths relative to `data_root`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SPLIT_FIELDS)
    for subset, samples in zip(SUBSETS, (train, val), strict=True):
        for s in samples:
            rel = s.path.resolve().relative_to(Path(data_root).resolve())
            writer.writerow((subset, LABELS[s.label], s.patient, s.sha256, rel.as_posix()))
    atomic_write_text(Path(path), buffer.getvalue(), mode=0o644)


def read_split(path: Path) -> dict[str, list[SplitRow]]:
    """split.csv as {'train': [...], 'val': [...]}; a bad subset or label names its line."""
    subsets: dict[str, list[SplitRow]] = {subset: [] for subset in SUBSETS}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != SPLIT_FIELDS:
            columns = ",".join(SPLIT_FIELDS)
            raise ValueError(f"{path} must have the columns {columns}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            subset = row["subset"]
            if subset not in subsets:
                raise ValueError(f"{path}:{line}: subset {subset!r} is not 'train' or 'val'")
            label = label_index(row["label"], f"{path}:{line}")
            subsets[subset].append(SplitRow(row["path"], label, row["sha256"], subset, row["patient"]))
    return subsets


def label_index(label: str, where: str) -> int:
    """0 for NORMAL, 1 for PNEUMONIA; anything else is refused with `where` in the message."""
    if label not in LABELS:
        raise ValueError(f"{where}: label {label!r} is not one of {list(LABELS)}")
    return LABELS.index(label)


def write_run(out_dir: Path, run: Mapping[str, Any]) -> None:
    """run.json, last: its presence marks the run finished, so the model file it names must exist."""
    absent = [key for key in REQUIRED_RUN_KEYS if key not in run]
    if absent:
        raise ValueError(f"run.json needs {', '.join(absent)}")
    if not (Path(out_dir) / run["model_file"]).is_file():
        raise FileNotFoundError(f"{Path(out_dir) / run['model_file']} must be written before run.json")
    atomic_write_text(Path(out_dir) / RUN_FILE, json.dumps(run, indent=2) + "\n", mode=0o644)


def read_run_dir(root: Path | str) -> RunDir:
    """Read and check a finished run; a missing file or key says which and what writes it."""
    root = Path(root)
    missing = [name for name in (RUN_FILE, CONFIG_FILE, SPLIT_FILE) if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not a finished training run: {', '.join(missing)} missing "
            f"(run.json is written last; wait for `python -m trainer train --out {root}` to finish)"
        )
    run = json.loads((root / RUN_FILE).read_text(encoding="utf-8"))
    absent = [key for key in REQUIRED_RUN_KEYS if key not in run]
    if absent:
        raise ValueError(f"{root / RUN_FILE} lacks {', '.join(absent)}; re-run the trainer")
    if not (root / run["model_file"]).is_file():
        raise FileNotFoundError(f"{root / run['model_file']}, the model run.json names, is missing")
    config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    lacking = [key for key in ("min_recall", "seed") if key not in config]
    if lacking:
        raise ValueError(f"{root / CONFIG_FILE} lacks {', '.join(lacking)}, needed for the threshold rule")
    split = read_split(root / SPLIT_FILE)
    if not split["train"] or not split["val"]:
        raise ValueError(f"{root / SPLIT_FILE} must list both train and val images")
    return RunDir(root, run, config, split)
