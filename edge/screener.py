"""The screener: an X-ray (file bytes, or a film already decoded) in, a gated, explained assessment out.

One `Screener` is built per kiosk (loading the interpreter is the expensive part) and shared by
every request; `assess` and `assess_image` are thread-safe. The order is the order a careful
reader would check: decode (an undecodable file raises `ImageError`), the image-level quality gate,
the model, the out-of-distribution gate, then the label and the heatmap layer. A refused image
gets no label. A caller that needs the decoded pixels itself (the kiosk keeps them for the stored
copy) decodes once with `edge.preprocess.load_xray` and hands the film to `assess_image`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge import INTENDED_USE
from edge.bundle import OUTPUT_CAM, OUTPUT_EMBEDDING, OUTPUT_FEATURES, OUTPUT_PROBABILITY, Bundle, load_bundle
from edge.calibration import in_refer_band
from edge.film_subspace import default_subspace
from edge.heatmap import LAYER_LONG_SIDE, render
from edge.preprocess import XrayImage, load_xray, to_model_input
from edge.quality import GateResult, OodStats, QualityThresholds, check_embedding, check_image
from edge.runtime import KERNELS_AUTO, TfliteModel

log = logging.getLogger(__name__)

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"


def default_model_dir() -> Path:
    """The shipped bundle models/mobilenetv2-int8: inside the installed package, else in the checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "models" / "mobilenetv2-int8"  # where the wheel puts it (pyproject.toml)
    return installed if installed.is_dir() else package.parent / "models" / "mobilenetv2-int8"


@dataclass(frozen=True)
class ScreenerOptions:
    """How a Screener runs; every field has a default that suits a Raspberry Pi-class kiosk."""

    #: TFLite interpreter threads; None lets the runtime choose.
    num_threads: int | None = None
    #: Which kernels run the model (edge.runtime.KERNEL_CHOICES); `auto` keeps the runtimes in parity.
    kernels: str = KERNELS_AUTO
    #: Draw the heatmap layer (an indexed PNG, see edge.heatmap) for accepted images.
    heatmap: bool = True
    #: Longest side of the heatmap layer, in pixels.
    heatmap_long_side: int = LAYER_LONG_SIDE
    #: Quality gate limits.
    quality: QualityThresholds = field(default_factory=QualityThresholds)


@dataclass(frozen=True)
class Assessment:
    """The result for one file; `label`/`probability` are None when the gate refused it."""

    status: str  # "ok" | "rejected"
    label: str | None
    probability: float | None
    threshold: float
    #: Upper edge of the "uncertain: refer" band: a PNEUMONIA call below it is uncertain (None: no band).
    refer_band_upper: float | None
    calibration: str  # which calibration (and threshold) is in force, and the films that set it
    logit: float | None  # the head's output before calibration, for site calibration and audits
    ood_score: float | None  # rms_z of the embedding (None: refused before the model, or no ood section)
    reason: str | None  # machine code of a refusal
    detail: str  # human message
    quality_flags: tuple[str, ...]
    heatmap_png: bytes | None  # the heatmap layer (edge.heatmap.render), accepted films only
    input_sha256: str
    model_name: str
    model_sha256: str
    runtime: str
    elapsed_ms: float
    #: the model's pooled features, for site calibration (never stored or shown)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def uncertain(self) -> bool:
        """Referred, but in the band where the site's films were about as often NORMAL as not."""
        return in_refer_band(self.label, self.probability, self.refer_band_upper)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (without the PNG and the embedding), with the intended-use statement."""
        fields = asdict(self)
        del fields["heatmap_png"], fields["embedding"]
        fields["quality_flags"] = list(self.quality_flags)
        fields["uncertain"] = self.uncertain
        fields["intended_use"] = INTENDED_USE
        return fields


class Screener:
    """Scores X-ray files with one verified bundle."""

    def __init__(self, bundle: Bundle, options: ScreenerOptions | None = None) -> None:
        self.bundle = bundle
        self.options = options or ScreenerOptions()
        self.model = TfliteModel(
            bundle.model_path, num_threads=self.options.num_threads, kernels=self.options.kernels
        )
        missing = {OUTPUT_PROBABILITY, OUTPUT_CAM, OUTPUT_EMBEDDING} - set(self.model.output_names)
        if missing:
            raise ValueError(
                f"{bundle.model_path} lacks signature outputs {sorted(missing)}; "
                "re-export it as described in docs/bundle-format.md"
            )
        self._head = bundle.head
        self._calibration = bundle.calibration
        embedding_size = math.prod(self.model.output_shapes[OUTPUT_EMBEDDING][1:])
        if self._head.kernel.size != embedding_size:
            raise ValueError(
                f"the head of {bundle.root} takes {self._head.kernel.size} values but the model's "
                f"embedding has {embedding_size}; re-export the bundle"
            )
        self._ood = OodStats.from_metadata(bundle.metadata.get("ood"))
        if self._ood is None:
            log.warning("bundle %s has no ood section: the out-of-distribution check is off", bundle.name)
        elif self._ood.mean.size != embedding_size:
            raise ValueError(
                f"the ood section of {bundle.root} has {self._ood.mean.size} dimensions but the model's "
                f"embedding has shape {self.model.output_shapes[OUTPUT_EMBEDDING]}; re-export the bundle"
            )

        if self.options.quality.check_film_layout:
            default_subspace()  # a missing or damaged film_subspace.npz stops the start, not an upload

    @classmethod
    def from_path(cls, model_dir: Path | str, options: ScreenerOptions | None = None) -> Screener:
        """Load and verify the bundle in `model_dir` (BundleError if it fails), then build the screener."""
        return cls(load_bundle(model_dir), options)

    def assess(self, data: bytes) -> Assessment:
        """Assess one file's bytes; raises edge.preprocess.ImageError when they cannot be decoded."""
        started = time.perf_counter()
        return self.assess_image(load_xray(data), hashlib.sha256(data).hexdigest(), started)

    def assess_image(self, image: XrayImage, sha: str, started: float | None = None) -> Assessment:
        """Assess a decoded film: `sha` is the sha256 of its file, `started` when decoding began.

        The kiosk decodes each upload once and keeps the pixels for its stored copy; the
        evaluations feed transformed films here, past the decoder.
        """
        started = time.perf_counter() if started is None else started
        gate = check_image(image, self.options.quality)
        if not gate.passed:
            return self._rejected(sha, started, gate)
        outputs = self.model.run(to_model_input(image, self.bundle.input_size, self.bundle.intensity))
        embedding = outputs[OUTPUT_EMBEDDING]
        ood_score = None if self._ood is None else self._ood.score(embedding)
        gate = check_embedding(embedding, self._ood, self.options.quality)
        if not gate.passed:
            return self._rejected(sha, started, gate, ood_score)
        logit = float(self._head.logits(embedding)[0])
        layer = None
        if self.options.heatmap:
            cam = self._cam(outputs)
            layer = render(image.width, image.height, cam, self.options.heatmap_long_side).png
        return replace(self._scored(sha, started, logit, ood_score, layer), embedding=embedding.reshape(-1))

    def _cam(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The (h, w) map in logit units, from the bundle's head where the model gives its features."""
        if OUTPUT_FEATURES in outputs:
            return self._head.logits(outputs[OUTPUT_FEATURES]).reshape(outputs[OUTPUT_FEATURES].shape[1:3])
        return outputs[OUTPUT_CAM].reshape(outputs[OUTPUT_CAM].shape[-2:])

    def _rejected(
        self, sha: str, started: float, gate: GateResult, ood_score: float | None = None
    ) -> Assessment:
        return self._assessment(
            sha, started, STATUS_REJECTED, None, None, None, ood_score, gate.detail, gate, None
        )

    def _scored(
        self, sha: str, started: float, logit: float, ood_score: float | None, layer: bytes | None
    ) -> Assessment:
        probability = float(self._calibration.probabilities(np.array([logit]))[0])
        threshold, labels = self.bundle.threshold, self.bundle.labels
        positive = probability >= threshold
        label = labels[1] if positive else labels[0]
        upper = self._calibration.refer_band_upper
        band = (
            f" Uncertain: below {upper:.3f}, the upper edge of the refer band; refer for a reading."
            if in_refer_band(label, probability, upper)
            else ""
        )
        detail = (
            f"{label}: probability of {labels[1]} {probability:.3f} {'>=' if positive else '<'} "
            f"threshold {threshold:.3f} ({self._calibration.description}).{band} {INTENDED_USE}"
        )
        return self._assessment(
            sha, started, STATUS_OK, label, probability, logit, ood_score, detail, GateResult(), layer
        )

    def _assessment(
        self,
        sha: str,
        started: float,
        status: str,
        label: str | None,
        probability: float | None,
        logit: float | None,
        ood_score: float | None,
        detail: str,
        gate: GateResult,
        layer: bytes | None,
    ) -> Assessment:
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        log.info("assessed input %s: %s %s in %.0f ms", sha[:12], status, label or gate.reason, elapsed_ms)
        return Assessment(
            status=status,
            label=label,
            probability=probability,
            threshold=self.bundle.threshold,
            refer_band_upper=self._calibration.refer_band_upper,
            calibration=self._calibration.description,
            logit=logit,
            ood_score=ood_score,
            reason=gate.reason,
            detail=detail,
            quality_flags=gate.flags,
            heatmap_png=layer,
            input_sha256=sha,
            model_name=self.bundle.name,
            model_sha256=self.bundle.model_sha256,
            runtime=self.model.runtime_name,
            elapsed_ms=elapsed_ms,
        )
