"""`python -m quantize export`: a training run -> verified bundles, one per variant.

For each variant the model is converted, then measured through the converted TFLite model on the
kiosk's own input path: its threshold (the run's rule on the validation patients), its validation
metrics, and its out-of-distribution statistics (embeddings of training images). Nothing measured on
the Keras model is copied into a bundle.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Bundle, load_bundle, write_bundle
from edge.calibration import Head
from edge.intensity import standardise_all
from edge.provenance import git_commit, sha256_file
from lab.run_dir import RunDir, read_run_dir
from lab.shift import random_acquisition
from lab.tf_env import keras
from quantize import calibrate
from quantize.adabn import adapt_batchnorm
from quantize.convert import to_tflite
from quantize.images import DecodedImages, LabelledFile, decode, scan_folder, write_file_list
from quantize.prune import measured_sparsity, prune
from quantize.settings import INTEGER_VARIANTS, VARIANT_FLOAT, ExportSettings, PruneSettings
from quantize.signature import INPUT_NAME, SignatureShapes, head_layer, shapes_of

log = logging.getLogger(__name__)

HELDOUT_FILE = "heldout-validation.csv"
#: Largest acceptable F1 loss of an integer variant against float32 (0.5 points).
MAX_F1_LOSS = 0.005


@dataclass
class _Inputs:
    """Everything decoded once for all variants."""

    val: DecodedImages
    calibration: DecodedImages
    ood_fit: DecodedImages
    ood_threshold: DecodedImages
    train: DecodedImages | None  # all training images, only when a pruned variant is asked for
    site: DecodedImages | None  # a site's films for AdaBN (labels unread), only when asked for


def export(run_path: Path, out_prefix: Path, settings: ExportSettings) -> list[Bundle]:
    """Write `<prefix>-<variant>` bundles and the held-out validation list next to them."""
    run = read_run_dir(run_path)
    data_root = settings.data_root or run.data_root
    inputs = _decode_inputs(run, data_root, settings)
    model = keras.models.load_model(run.model_path, compile=False)
    write_file_list(out_prefix.parent / HELDOUT_FILE, run.split["val"])
    adaptation = _adapted(model, inputs.site, run.seed, settings)
    bundles = []
    for variant in settings.variants:
        bundles.append(_export_variant(run, model, variant, inputs, out_prefix, settings, adaptation))
    _check_integer_f1(bundles)
    return bundles


def _sample(files: list[LabelledFile], count: int, seed: int) -> list[LabelledFile]:
    """A seeded random subset, in the split's order, so the same run gives the same images."""
    if count >= len(files):
        return list(files)
    picked = np.random.default_rng(seed).choice(len(files), size=count, replace=False)
    return [files[i] for i in sorted(picked)]


def _decode_inputs(run: RunDir, data_root: Path, settings: ExportSettings) -> _Inputs:
    size, train_files = run.input_size, run.split["train"]
    needs_train = any(v.startswith("pruned") for v in settings.variants)
    train = decode(data_root, train_files, size) if needs_train else None

    def subset(files: list[LabelledFile]) -> DecodedImages:
        if train is None:
            return decode(data_root, files, size)
        index = {entry.sha256: i for i, entry in enumerate(train.files)}
        rows = [index[entry.sha256] for entry in files]
        return DecodedImages(train.images[rows], train.labels[rows], files)

    ood_files = _sample(train_files, 2 * settings.ood_images, run.seed + 1)
    # training films are decoded as they come and standardised after their variation (_varied), as in training
    return _Inputs(
        val=decode(data_root, run.split["val"], size, intensity=run.intensity),
        calibration=subset(_sample(train_files, settings.calibration_images, run.seed)),
        ood_fit=subset(ood_files[0::2]),
        ood_threshold=subset(ood_files[1::2]),
        train=train,
        site=_site_films(settings.adapt_batchnorm, size, run.intensity),
    )


def _site_films(folder: Path | None, size: int, intensity: str) -> DecodedImages | None:
    if folder is None:
        return None
    root, files = scan_folder(folder)
    return decode(root, files, size, intensity=intensity)


def _adapted(
    model: keras.Model, site: DecodedImages | None, seed: int, settings: ExportSettings
) -> dict[str, Any] | None:
    """AdaBN on the site's films when asked for; what to record in the bundle's provenance."""
    if site is None:
        return None
    section = adapt_batchnorm(model, site.images, seed)
    return {**section, "site": str(settings.adapt_batchnorm), "labels_read": False}


def _export_variant(
    run: RunDir,
    model: keras.Model,
    variant: str,
    inputs: _Inputs,
    out_prefix: Path,
    settings: ExportSettings,
    adaptation: dict[str, Any] | None,
) -> Bundle:
    log.info("exporting %s", variant)
    provenance: dict[str, Any] = {}
    if variant.startswith("pruned"):
        model, provenance = _pruned(model, inputs.train, run, settings.prune)
        if inputs.site is not None:  # fine-tuning on training films ran with the adapted statistics
            adapt_batchnorm(model, inputs.site.images, run.seed)
    if adaptation is not None:
        provenance["batchnorm_adaptation"] = adaptation
    integer = variant in INTEGER_VARIANTS
    calibration = _calibration_images(inputs, run.seed, run.intensity) if integer else None
    model_bytes = to_tflite(model, run.feature_layer, integer, calibration)
    kernel, bias = head_layer(model).get_weights()
    head = Head(np.asarray(kernel, dtype=np.float64).reshape(-1), float(bias[0]))
    val = calibrate.score_bytes(model_bytes, inputs.val.images, head, settings.threads)
    threshold, metrics = calibrate.threshold_and_metrics(
        inputs.val.labels, val.probabilities, run.min_recall, run.seed
    )
    ood = _ood(model_bytes, head, inputs, val.embeddings, settings.threads, run)
    provenance.update(_provenance(run, len(inputs.calibration.files) if integer else 0, settings.data_root))
    name = f"{out_prefix.name}-{variant}"
    shapes = shapes_of(model, run.feature_layer)
    metadata = {
        "name": name,
        "variant": variant,
        "labels": run.labels,
        "threshold": threshold,
        "threshold_rule": run.threshold_rule + " (recalibrated on this variant's TFLite outputs)",
        "input": _input_contract(shapes, integer, run.intensity),
        "outputs": shapes.outputs(run.labels),
        "head": head.to_metadata(),
        "calibration": {
            "slope": 1.0,
            "intercept": 0.0,
            "description": "threshold from validation patients of the training pool (in-distribution)",
        },
        "validation_metrics": metrics,
        "ood": ood,
        "provenance": provenance,
    }
    bundle = write_bundle(out_prefix.parent / name, model_bytes, metadata)
    log.info(
        "%s: %.0f kB, threshold %.4f, validation F1 %.4f AUC %.4f, ood threshold %.3f",
        name,
        len(model_bytes) / 1000,
        threshold,
        metrics["f1"]["value"],
        metrics["auc"]["value"],
        ood["threshold"],
    )
    return bundle


def _calibration_images(inputs: _Inputs, seed: int, intensity: str) -> np.ndarray:
    """Varied training films, plus the site's films when the statistics were adapted to them."""
    varied = _varied(inputs.calibration.images, seed, intensity)
    return varied if inputs.site is None else np.concatenate([varied, inputs.site.images])


def _varied(images: np.ndarray, seed: int, intensity: str) -> np.ndarray:
    """The clean training copies and each one re-acquired once (lab.shift.random_acquisition), then
    standardised as the model's inputs are."""
    return standardise_all(np.concatenate([images, random_acquisition(images, seed)]), intensity)


def _ood(
    model_bytes: bytes, head: Head, inputs: _Inputs, val_embeddings: np.ndarray, threads: int, run: RunDir
) -> dict[str, Any]:
    """The ood section from varied training films, and its false-reject rate on validation X-rays."""
    seed, intensity = run.seed, run.intensity
    fit_images = _varied(inputs.ood_fit.images, seed, intensity)
    fit = calibrate.score_bytes(model_bytes, fit_images, head, threads).embeddings
    varied = _varied(inputs.ood_threshold.images, seed + 1, intensity)
    holdout = calibrate.score_bytes(model_bytes, varied, head, threads).embeddings
    section = calibrate.ood_section(fit, holdout)
    section["validation_false_reject_rate"] = calibrate.false_reject_rate(section, val_embeddings)
    return section


def recalibrate_ood(run_path: Path, bundle_dirs: list[Path], settings: ExportSettings) -> list[Bundle]:
    """Recompute the ood section of existing bundles of this run; the model files stay byte-identical.

    Gives exactly what `export` writes for the same model bytes, without converting or pruning again.
    """
    run = read_run_dir(run_path)
    data_root = settings.data_root or run.data_root
    inputs = _decode_inputs(run, data_root, replace(settings, variants=(VARIANT_FLOAT,)))
    bundles = []
    for path in bundle_dirs:
        bundle = load_bundle(path)
        if bundle.metadata.get("provenance", {}).get("run") != str(run.root):
            raise ValueError(f"{path} was not exported from {run.root}; pass that bundle's own run")
        model_bytes = bundle.model_path.read_bytes()
        val = calibrate.score_bytes(model_bytes, inputs.val.images, bundle.head, settings.threads)
        ood = _ood(model_bytes, bundle.head, inputs, val.embeddings, settings.threads, run)
        ood["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        bundles.append(write_bundle(bundle.root, model_bytes, {**bundle.metadata, "ood": ood}))
        log.info("%s: ood threshold %.3f, false rejects on validation %.2f%%", bundle.name,
                 ood["threshold"], 100 * ood["validation_false_reject_rate"])  # fmt: skip
    return bundles


def _pruned(
    model: keras.Model, train: DecodedImages | None, run: RunDir, settings: PruneSettings
) -> tuple[keras.Model, dict[str, Any]]:
    """The pruned, fine-tuned model and what to record about it."""
    if train is None:
        raise ValueError("the pruned variant needs the decoded training images")
    images = standardise_all(train.images, run.intensity)
    pruned = prune(model, images, train.labels, run.class_weights, settings)
    measured = measured_sparsity(pruned, settings.min_weights)
    provenance = {
        "pruning": {**asdict(settings), "measured_sparsity": measured},
        "sparsity": measured["pruned_kernels"],
    }
    return pruned, provenance


def _input_contract(shapes: SignatureShapes, integer: bool, intensity: str) -> dict[str, Any]:
    return {
        "name": INPUT_NAME,
        "height": shapes.input_size,
        "width": shapes.input_size,
        "channels": shapes.channels,
        "colour": "grayscale",
        "resize": "pillow-bicubic-squash",
        "dtype": "uint8" if integer else "float32",
        "value_range": [0, 255],
        "intensity": intensity,
        "preprocess": "edge.preprocess.load_model_input",
    }


def _provenance(run: RunDir, calibration_count: int, data_override: Path | None) -> dict[str, Any]:
    return {
        "run": str(run.root),
        "git_commit": run.run.get("git_commit"),
        "export_git_commit": git_commit(),
        "training_command": run.run.get("command"),
        "data_root": str(data_override or run.data_root),
        "data_manifest_sha256": run.run.get("data_manifest_sha256"),
        "weights_sha256": run.run.get("weights_sha256"),
        "keras_model_sha256": sha256_file(run.model_path),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration_images": calibration_count,
        "calibration_subset": "train" if calibration_count else None,
    }


def _check_integer_f1(bundles: list[Bundle]) -> None:
    """Warn when an integer variant loses more than MAX_F1_LOSS F1 against float32 on validation."""
    f1 = {b.metadata["variant"]: b.metadata["validation_metrics"]["f1"]["value"] for b in bundles}
    if VARIANT_FLOAT not in f1:
        return
    for variant, value in f1.items():
        loss = f1[VARIANT_FLOAT] - value
        if variant != VARIANT_FLOAT and loss > MAX_F1_LOSS:
            log.warning(
                "%s loses %.2f F1 points against float32 on validation (limit %.1f): "
                "consider quantization-aware training",
                variant,
                100 * loss,
                100 * MAX_F1_LOSS,
            )
