"""Read a training run directory (written by `python -m trainer train`) through its files alone.

quantize/ never imports trainer/: the run's run.json, config.json, split.csv and model.keras are the
whole interface, so a run trained on another machine can be exported here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantize.images import LabelledFile, read_run_split

REQUIRED_FILES = ("run.json", "config.json", "split.csv")
REQUIRED_RUN_KEYS = ("feature_layer", "input_size", "labels", "model_file")


@dataclass(frozen=True)
class RunDir:
    """A finished run: its metadata, its training configuration and its patient split."""

    root: Path
    run: dict[str, Any]
    config: dict[str, Any]
    split: dict[str, list[LabelledFile]]

    @property
    def model_path(self) -> Path:
        return self.root / self.run["model_file"]

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
    def min_recall(self) -> float:
        return float(self.config["min_recall"])

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def threshold_rule(self) -> str:
        return f"highest threshold with validation recall >= {self.min_recall}"

    @property
    def data_root(self) -> Path:
        return Path(self.run["data_root"])


def read_run_dir(root: Path | str) -> RunDir:
    """Read and check a run directory; a missing file names the trainer command that writes it."""
    root = Path(root)
    missing = [name for name in (*REQUIRED_FILES, "model.keras") if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{root} is not a finished training run: {', '.join(missing)} missing "
            "(run.json is written last; wait for `python -m trainer train --out {root}` to finish)"
        )
    run = json.loads((root / "run.json").read_text(encoding="utf-8"))
    absent = [key for key in REQUIRED_RUN_KEYS if key not in run]
    if absent:
        raise ValueError(f"{root / 'run.json'} lacks {', '.join(absent)}; re-run the trainer")
    config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    if "min_recall" not in config:
        raise ValueError(f"{root / 'config.json'} lacks min_recall, needed for the threshold rule")
    split = read_run_split(root / "split.csv")
    if not split["train"] or not split["val"]:
        raise ValueError(f"{root / 'split.csv'} must list both train and val images")
    return RunDir(root, run, config, split)
