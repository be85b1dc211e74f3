"""Every export choice in two dataclasses, importable without TensorFlow (the CLI's --help needs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

VARIANT_FLOAT = "float32"
INTEGER_VARIANTS = ("int8", "pruned-int8")
VARIANTS = (VARIANT_FLOAT, *INTEGER_VARIANTS)


@dataclass(frozen=True)
class PruneSettings:
    """Defaults are the shipped pruned model's settings (docs/quantize.md says why)."""

    sparsity: float = 0.7  # share of each pruned kernel's weights set to zero
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-4
    min_weights: int = 10_000  # layers with fewer kernel weights stay dense
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), e.g. 0.7; got {self.sparsity}")
        if self.epochs < 1:
            raise ValueError(f"prune epochs must be >= 1, got {self.epochs}")


@dataclass(frozen=True)
class ExportSettings:
    variants: tuple[str, ...] = VARIANTS
    calibration_images: int = 200  # training-subset images for int8 calibration (never validation)
    ood_images: int = 1000  # training images for the ood mean/std, and as many others for its threshold
    threads: int = 2  # TFLite threads while scoring
    data_root: Path | None = None  # default: the run's data_root
    #: A site's films (Kermany layout, labels unread) whose BatchNorm statistics replace ImageNet's (AdaBN)
    adapt_batchnorm: Path | None = None
    prune: PruneSettings = field(default_factory=PruneSettings)

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(f"variants {unknown or '(none)'} unknown; choose from {', '.join(VARIANTS)}")
        if self.calibration_images < 1:
            raise ValueError(f"calibration images must be >= 1, got {self.calibration_images}")
