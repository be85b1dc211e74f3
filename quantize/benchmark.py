"""`python -m quantize benchmark`: every bundle scored on the same images, timed, and reported.

Images are decoded once with `edge.preprocess.load_model_input` and the same tensors go to every
model, so differences between models are the models'. Each model's label uses its own bundle
threshold. Latency and memory come from fresh subprocesses (quantize.latency).
"""

from __future__ import annotations

import gzip
import logging
import os
import platform
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle, load_bundle
from edge.kermany import Sample
from edge.metrics import binary_metrics, roc_curve
from edge.preprocess import XrayImage
from edge.runtime import RUNTIMES, TfliteModel
from edge.screener import Screener, ScreenerOptions
from lab.shift import Scorer, ShiftSets, build_shift_sets, shift_report
from quantize import calibrate
from quantize.images import DecodedImages, LabelledFile, decode, read_file_list, scan_folder
from quantize.latency import installed_runtimes, measure
from quantize.report import write_report

log = logging.getLogger(__name__)

REFERENCE_VARIANT = "float32"


@dataclass(frozen=True)
class BenchmarkSettings:
    runs: int = 100  # timed invocations per model, runtime and thread count
    threads: tuple[int, ...] = (1, 2)
    runtimes: tuple[str, ...] | None = None  # None: every installed runtime
    scoring_threads: int = 2

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise ValueError(f"--runs must be >= 1, got {self.runs}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"--threads must be positive integers, got {self.threads}")
        unknown = [r for r in self.runtimes or () if r not in RUNTIMES]
        if unknown:
            raise ValueError(f"--runtimes {unknown} unknown; choose from {', '.join(RUNTIMES)}")


def select_images(data: Path, split: Path | None) -> tuple[Path, list[LabelledFile], str]:
    """The listed files under the data root, or every image of a Kermany split folder."""
    if split is not None:
        files = read_file_list(split)
        if not files:
            raise ValueError(f"{split} lists no images")
        return Path(data), files, f"{split} ({len(files)} images under {data})"
    root, files = scan_folder(data)
    if not files:
        raise ValueError(f"{data} holds no images in NORMAL/ or PNEUMONIA/")
    return root, files, f"every image of {data} ({len(files)})"


def shift_sets(
    data: Path,
    split: Path | None,
    site: Path | None,
    fullres: Path | None,
    fullres_copies: Path | None,
    suite_films: int,
) -> ShiftSets | None:
    """The shift evaluations asked for on the command line; None when none is."""
    root, files, description = select_images(data, split)
    held_out = [Sample(root / f.path, f.label, "", f.sha256) for f in files]
    copies = fullres_copies or Path(data) / "train"
    return build_shift_sets(site, fullres, copies, held_out, suite_films, description)


def run_benchmark(
    data: Path,
    model_dirs: list[Path],
    out: Path,
    split: Path | None,
    settings: BenchmarkSettings,
    shift: ShiftSets | None = None,
) -> dict[str, Any]:
    """Score, size and time every bundle; write report.md, report.json and the plots into `out`.

    `shift`: the evaluations that can see shift (site films, robustness suite, full-resolution pairs),
    each through the kiosk's own path (Screener: decoder, quality gate, model, float head).
    """
    bundles = [load_bundle(path) for path in model_dirs]  # refuses altered or unknown bundles
    load_before = os.getloadavg()
    names = [b.name for b in bundles]
    if len(set(names)) != len(names):
        raise ValueError(f"bundle names must differ to be compared, got {names}")
    data_root, files, description = select_images(data, split)
    decoded: dict[tuple[int, str], DecodedImages] = {}
    for size, intensity in sorted({(b.input_size, b.intensity) for b in bundles}):
        decoded[size, intensity] = decode(data_root, files, size, intensity=intensity)
    runtimes = [r for r in installed_runtimes() if settings.runtimes is None or r in settings.runtimes]
    if not runtimes:
        raise ValueError(f"none of the runtimes {settings.runtimes} is installed; try ai-edge-litert")
    models = []
    for bundle in bundles:
        images = decoded[bundle.input_size, bundle.intensity]
        entry = _model_entry(bundle, images, runtimes, settings)
        if shift is not None:
            log.info("shift evaluations of %s", bundle.name)
            entry["shift"] = shift_report(
                kiosk_scorer(bundle, settings.scoring_threads), bundle.threshold, shift
            )
        models.append(entry)
    _add_agreement(models)
    result = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": {
            "description": description,
            "n": len(files),
            "n_positive": int(sum(f.label for f in files)),
        },
        "machine": {
            **machine_info(runtimes),
            "load_average_start": [round(v, 2) for v in load_before],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
        "settings": asdict(settings),
        "models": models,
    }
    result["targets"] = check_targets(models)
    write_report(Path(out), result)
    return result


def _model_entry(
    bundle: Bundle, images: DecodedImages, runtimes: list[str], settings: BenchmarkSettings
) -> dict[str, Any]:
    log.info("scoring %s on %d images", bundle.name, len(images.labels))
    model = TfliteModel(bundle.model_path, num_threads=settings.scoring_threads)
    logits = calibrate.score_model(model, images.images, bundle.head).logits
    probabilities = bundle.calibration.probabilities(logits)
    fpr, tpr, _ = roc_curve(images.labels, probabilities)
    model_bytes = bundle.model_path.read_bytes()
    latency = []
    with tempfile.TemporaryDirectory() as tmp:
        input_path = Path(tmp) / "input.npy"
        np.save(input_path, images.images[0])
        for runtime in runtimes:
            for threads in settings.threads:
                log.info("timing %s on %s, %d thread(s)", bundle.name, runtime, threads)
                timing = measure(bundle.model_path, runtime, threads, settings.runs, input_path)
                latency.append(asdict(timing))
    return {
        "name": bundle.name,
        "variant": bundle.metadata.get("variant"),
        "path": str(bundle.root),
        "threshold": bundle.threshold,
        "calibration": bundle.calibration.description,
        "metrics": binary_metrics(images.labels, probabilities, bundle.threshold),
        "size_bytes": len(model_bytes),
        "gzip_bytes": len(gzip.compress(model_bytes, compresslevel=9)),
        "latency": latency,
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "probabilities": probabilities.tolist(),
    }


def kiosk_scorer(bundle: Bundle, threads: int) -> Scorer:
    """Films -> probabilities through the kiosk's Screener; NaN where its quality gate refuses."""
    screener = Screener(bundle, ScreenerOptions(num_threads=threads, heatmap=False))

    def score(films: Sequence[XrayImage]) -> np.ndarray:
        results = (screener.assess_image(film, sha="") for film in films)
        return np.array([np.nan if a.probability is None else a.probability for a in results])

    return score


def _add_agreement(models: list[dict[str, Any]]) -> None:
    """Label agreement and probability differences against the float32 model, on every set scored."""
    reference = next((m for m in models if m["variant"] == REFERENCE_VARIANT), models[0])
    for entry in models:
        entry["agreement"] = {
            "reference": reference["name"],
            **_agree(
                reference["probabilities"], reference["threshold"], entry["probabilities"], entry["threshold"]
            ),
        }
        if "shift" in entry and "shift" in reference:
            entry["agreement"]["shift"] = _shift_agreement(reference, entry)


def _agree(ref_p: Sequence[float], ref_t: float, p: Sequence[float], t: float) -> dict[str, float]:
    ref, mine = np.asarray(ref_p, dtype=np.float64), np.asarray(p, dtype=np.float64)
    both = ~np.isnan(ref) & ~np.isnan(mine)
    # a film refused by one model and not the other is a disagreement
    same = (np.isnan(ref) & np.isnan(mine)) | (both & ((ref >= ref_t) == (mine >= t)))
    return {
        "same_label": float(np.mean(same)),
        "max_probability_difference": float(np.abs(ref[both] - mine[both]).max()) if both.any() else 0.0,
        "mean_probability_difference": float(np.abs(ref[both] - mine[both]).mean()) if both.any() else 0.0,
    }


def _shift_agreement(reference: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Agreement with the reference on the site films, every robustness change and the full-res films."""
    ref, mine = reference["shift"], entry["shift"]
    out: dict[str, Any] = {}
    pairs = []
    if "site" in mine:
        pairs.append(("site", ref["site"]["probabilities"], mine["site"]["probabilities"]))
        out["site_delta_f1"] = mine["site"]["metrics"]["f1"]["value"] - ref["site"]["metrics"]["f1"]["value"]
        out["site_delta_auc"] = (
            mine["site"]["metrics"]["auc"]["value"] - ref["site"]["metrics"]["auc"]["value"]
        )
    if "robustness" in mine:
        for name, figures in mine["robustness"]["changes"].items():
            pairs.append(
                (
                    f"robustness: {name}",
                    ref["robustness"]["changes"][name]["probabilities"],
                    figures["probabilities"],
                )
            )
    if "fullres" in mine:
        pairs.append(("fullres", ref["fullres"]["probabilities"], mine["fullres"]["probabilities"]))
    for name, ref_p, p in pairs:
        out[name] = _agree(ref_p, reference["threshold"], p, entry["threshold"])
    return out


def _latency(entry: dict[str, Any], runtime: str, threads: int) -> float | None:
    return next(
        (t["p50_ms"] for t in entry["latency"] if t["runtime"] == runtime and t["threads"] == threads), None
    )


def check_targets(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The release targets that the models present allow checking, each with measured values."""
    by_variant = {m["variant"]: m for m in models}
    float_m, int8, pruned = (by_variant.get(v) for v in ("float32", "int8", "pruned-int8"))
    targets = []
    if float_m and int8:
        loss = 100 * (float_m["metrics"]["f1"]["value"] - int8["metrics"]["f1"]["value"])
        targets.append(
            _target("int8 F1 within 0.5 points of float32", f"{loss:.2f} points lost", loss <= 0.5)
        )
        for threads in sorted({t["threads"] for t in int8["latency"]}):
            a, b = _latency(int8, "ai-edge-litert", threads), _latency(float_m, "ai-edge-litert", threads)
            if a is not None and b is not None:
                name = f"int8 no slower than float32 (ai-edge-litert, {threads} thread(s), p50)"
                targets.append(_target(name, f"{a:.1f} ms vs {b:.1f} ms", a <= b))
    if int8:
        mb = int8["size_bytes"] / 1e6
        targets.append(_target("int8 model <= 3 MB", f"{mb:.2f} MB", mb <= 3.0))
    if int8 and pruned:
        share = pruned["gzip_bytes"] / int8["gzip_bytes"]
        targets.append(_target("pruned gzipped <= 60% of int8 gzipped", f"{100 * share:.1f}%", share <= 0.6))
    return targets


def _target(name: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": name, "value": value, "met": bool(met)}


def machine_info(runtimes: list[str]) -> dict[str, Any]:
    versions = {}
    for name in runtimes:
        try:
            versions[name] = metadata.version(RUNTIMES[name][2])
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "runtimes": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
