"""Every training choice in one dataclass, written to the run so a run can be repeated exactly."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.intensity import check_method

#: Backbones we know: (keras.applications name, last convolution layer for the class activation map).
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "mobilenetv2": ("MobileNetV2", "out_relu"),
    "mobilenet": ("MobileNet", "conv_pw_13_relu"),
    "efficientnet-lite0": ("EfficientNet-Lite0 (trainer/efficientnet_lite.py)", "top_activation"),
}
#: First backbone layer unfrozen for fine-tuning when the config names none: the top blocks. Fine-tuning
#: all of MobileNetV2 (`Conv1`) fitted the training cohort better and the new cohort worse (site AUC
#: 0.967 against 0.977: docs/training.md, "Ablation").
#: EfficientNet-Lite0's counterpart of block_12_expand: the second block of the last 14 x 14 stage.
FINE_TUNE_FROM: dict[str, str] = {
    "mobilenetv2": "block_12_expand",
    "mobilenet": "conv_dw_12",
    "efficientnet-lite0": "block5b_expand_conv",
}
OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Defaults are the shipped model's settings; see docs/training.md 'What the sweep taught us'."""

    architecture: str = "mobilenetv2"  # mobilenetv2 (alpha 1.0), mobilenet (v1, 0.25), efficientnet-lite0
    alpha: float = 1.0
    input_size: int = 224
    weights: str | None = None  # path to an ImageNet backbone .h5; None trains from scratch
    seed: int = 42
    val_fraction: float = 0.15  # share of patients (per class) held out for validation
    batch_size: int = 32
    optimizer: str = "adam"  # adamw (decoupled weight decay) was tried: docs/training.md "Ablation"
    weight_decay: float = 0.01  # adamw only
    head_learning_rate: float = 1e-3
    head_epochs: int = 2
    fine_tune_learning_rate: float = 1e-4  # constant, or the peak of the cosine schedule
    schedule: str = "constant"  # fine-tuning rate: "constant" or "cosine" (warm-up, then down to 0)
    fine_tune_epochs: int = 6
    fine_tune_from: str | None = None  # first backbone layer unfrozen (None: FINE_TUNE_FROM)
    #: BatchNorm policy: frozen in inference mode with its ImageNet statistics. A batch of 32 films of
    #: one modality would otherwise rewrite the statistics towards the training cohort's look.
    train_batchnorm: bool = False
    dropout: float = 0.2
    label_smoothing: float = 0.0  # 0.1 was tried with AdamW + cosine: docs/training.md "Ablation"
    #: Mixup: each training film blended with another of its batch, weight Beta(a, a) (the larger part
    #: kept first), labels and class weights blended alike. 0 is off.
    mixup: float = 0.0
    #: The model kept is the last epoch: choosing an epoch on validation patients from the training
    #: pool selects for the training cohort's look, not for new cohorts.
    min_recall: float = 0.97  # threshold rule: highest threshold keeping validation recall >= this
    # augmentation (no flips: anatomy is not left-right symmetric and markers would read mirrored)
    rotation_degrees: float = 7.0
    shift_fraction: float = 0.06
    zoom_fraction: float = 0.10
    brightness: float = 0.10
    contrast: float = 0.15
    #: Acquisition augmentation: what differs between sites and export paths (trainer/acquisition.py).
    acquisition: bool = True
    #: Intensity standardisation of every model input (edge.intensity): "none", "clahe" or "equalise", after
    #: the acquisition augmentation in training; the bundle carries it to the kiosk.
    intensity: str = "none"
    limit: int | None = None  # use only N training files, a seeded stratified subset (smoke runs, sweeps)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} unknown; choose one of {list(ARCHITECTURES)}"
            )
        if self.architecture == "efficientnet-lite0" and self.alpha != 1.0:
            raise ValueError("efficientnet-lite0 has one width (alpha 1.0)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} unknown; choose one of {SCHEDULES}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} unknown; choose one of {OPTIMIZERS}")
        check_method(self.intensity)
        if self.mixup < 0.0:
            raise ValueError(f"mixup must be >= 0 (0 is off), got {self.mixup}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.fine_tune_from is None:
            self.fine_tune_from = FINE_TUNE_FROM[self.architecture]

    @property
    def feature_layer(self) -> str:
        return ARCHITECTURES[self.architecture][1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(path.read_text(encoding="utf-8")))
