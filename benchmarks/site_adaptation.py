"""What each site-adaptation candidate does to the ranking of a site's films, cross-validated by patient.

    python benchmarks/site_adaptation.py --run runs/mobilenetv2 --site ../shared/data/site-calibration

Candidates, all on the float Keras model of a training run (the int8 export follows it within 0.005 AUC):
- the trained head as it is (nothing fitted on the site films: its AUC there is honest);
- the head refitted on the site's embeddings with the trained head as prior (edge/head_refit.py), per
  prior strength, out-of-fold AUC over 5 folds by patient and 2 fold draws;
- test-time augmentation over scale (centre crops of 95% and 90%, resized back), logits averaged;
- AdaBN: every BatchNorm layer's statistics re-estimated on the site's films (quantize/adabn.py),
  then the head refitted (it was trained on unadapted embeddings);
- matched BatchNorm: each of the first N layers' statistics moved so that the site's films reach the
  next layer normalised as the training films did (per-channel moments of 600 training films);
- a head fitted afresh (no prior; L2, standardised embeddings) on the site's films pooled with 600
  training films per class, out of fold by patient over the site films, per L2 strength.
Labels are read only to score; AdaBN and the matched statistics never read them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from edge import INTENDED_USE
from edge.calibration import Head
from edge.head_refit import SiteFilms, choose_strength, fit_head, patient_folds
from edge.kermany import drop_duplicates, scan_split
from edge.metrics import roc_auc
from edge.preprocess import load_model_input
from lab.run_dir import read_run_dir
from lab.tf_env import keras, tf
from quantize.adabn import adapt_batchnorm, batchnorm_layers
from quantize.images import decode

STRENGTHS = (1000.0, 100.0, 30.0, 10.0, 3.0, 1.0)
Moments = list[tuple[np.ndarray, np.ndarray]]  # per BatchNorm layer: channel means and variances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training run directory")
    parser.add_argument("--site", type=Path, required=True, help="site films (NORMAL/, PNEUMONIA/)")
    parser.add_argument("--train-films", type=int, default=600, help="training films for matched BatchNorm")
    args = parser.parse_args()
    run = read_run_dir(args.run)
    model = keras.models.load_model(run.model_path, compile=False)
    samples, _ = drop_duplicates(scan_split(args.site.parent, args.site.name))
    images = np.stack([load_model_input(s.path.read_bytes(), run.input_size, run.intensity) for s in samples])
    labels = np.array([s.label for s in samples], dtype=bool)
    patients = tuple(s.patient for s in samples)
    kernel, bias = model.get_layer("probability").get_weights()
    prior = Head(kernel.reshape(-1).astype(np.float64), float(bias[0]))
    embed = keras.Model(model.inputs, model.get_layer("embedding").output)

    def embeddings(films: np.ndarray) -> np.ndarray:
        return embed.predict(films.astype(np.float32), batch_size=32, verbose=0).astype(np.float64)

    def report(name: str, films: np.ndarray) -> None:
        choice = choose_strength(SiteFilms(films, labels, patients), prior, STRENGTHS, repeats=2)
        refits = ", ".join(f"{s:g}: {a:.4f}" for s, a in choice.auc_by_strength.items())
        print(f"{name}: trained head AUC {choice.prior_auc:.4f}; refit out-of-fold AUC by strength {refits}")

    plain = embeddings(images)
    report("as trained", plain)
    logits = {1.0: prior.logits(plain)}
    for crop in (0.95, 0.9):
        logits[crop] = prior.logits(embeddings(_centre_crop(images, crop)))
        print(f"TTA crop {crop}: AUC {roc_auc(labels, logits[crop]):.4f}")
    print(f"TTA mean of crops 1, 0.95: AUC {roc_auc(labels, logits[1.0] + logits[0.95]):.4f}")
    print(f"TTA mean of crops 1, 0.95, 0.9: AUC {roc_auc(labels, sum(logits.values())):.4f}")

    original = model.get_weights()
    train_films = _sample(run.split["train"], args.train_films)
    training = decode(run.data_root, train_films, run.input_size, intensity=run.intensity).images
    per_class = [_sample([r for r in run.split["train"] if r.label == k], args.train_films) for k in (0, 1)]
    pooled = decode(run.data_root, per_class[0] + per_class[1], run.input_size, intensity=run.intensity)
    train_labels = np.array([r.label for r in per_class[0] + per_class[1]], dtype=bool)
    site, train = SiteFilms(plain, labels, patients), embeddings(pooled.images)
    for strength in (1000.0, 300.0, 100.0):
        auc = _pooled_refit_auc(site, train, train_labels, strength)
        print(f"fresh head on site + {len(train)} training films, L2 {strength:g}: out-of-fold AUC {auc:.4f}")
    moments = (_moments(model, training), _moments(model, images))
    for count in (1, 3, len(batchnorm_layers(model))):
        _match_batchnorm(model, *moments, count)
        report(f"matched BatchNorm, first {count} layers", embeddings(images))
        model.set_weights(original)
    adapt_batchnorm(model, images, seed=run.seed)
    report("AdaBN, all layers", embeddings(images))
    print(f"{INTENDED_USE} Every figure here is a research measurement.")


def _pooled_refit_auc(site: SiteFilms, train: np.ndarray, train_labels: np.ndarray, strength: float) -> float:
    """Mean out-of-fold site AUC (5 folds by patient, 2 draws) of a fresh head on site + training films."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    site_z, train_z = (site.embeddings - mean) / std, (train - mean) / std
    zero = Head(np.zeros(site_z.shape[1]), 0.0)
    draws = []
    for seed in range(2):
        folds, logits = patient_folds(site.patients, site.labels, 5, seed), np.empty(len(site.labels))
        for fold in range(5):
            held = folds == fold
            films = np.vstack([site_z[~held], train_z])
            targets = np.r_[site.labels[~held], train_labels]
            head = fit_head(SiteFilms(films, targets, ("",) * len(targets)), zero, strength)
            logits[held] = head.logits(site_z[held])
        draws.append(roc_auc(site.labels, logits))
    return float(np.mean(draws))


def _sample(files: list, count: int) -> list:
    rows = np.random.default_rng(0).choice(len(files), size=min(count, len(files)), replace=False)
    return [files[i] for i in sorted(rows)]


def _centre_crop(images: np.ndarray, share: float) -> np.ndarray:
    size = images.shape[1]
    side = round(size * share)
    start = (size - side) // 2
    window = (slice(start, start + side), slice(start, start + side), 0)
    crops = [np.asarray(Image.fromarray(im[window]).resize((size, size), Image.BICUBIC)) for im in images]
    return np.stack(crops)[..., None]


def _moments(model: keras.Model, films: np.ndarray) -> Moments:
    """Per-channel mean and variance of every BatchNorm layer's input over `films`."""
    probe = keras.Model(model.inputs, [layer.input for layer in batchnorm_layers(model)])
    sums: list[list] = []
    for start in range(0, len(films), 32):
        outputs = probe(films[start : start + 32].astype(np.float32), training=False)
        batch = [_channel_sums(tf.reshape(o, [-1, o.shape[-1]]).numpy()) for o in outputs]
        sums = batch if not sums else [_add(x, y) for x, y in zip(sums, batch, strict=True)]
    return [(s1 / n, np.maximum(s2 / n - (s1 / n) ** 2, 1e-12)) for s1, s2, n in sums]


def _add(left: list, right: list) -> list:
    return [a + b for a, b in zip(left, right, strict=True)]


def _channel_sums(values: np.ndarray) -> list:
    return [values.sum(axis=0), (values.astype(np.float64) ** 2).sum(axis=0), len(values)]


def _match_batchnorm(model: keras.Model, training: Moments, site: Moments, count: int) -> None:
    """Move the first `count` layers' statistics so site inputs are normalised as training inputs were.

    With training moments (mt, vt), site moments (ms, vs) and stored (m, v): v' = v vs / vt and
    m' = ms - (mt - m) sqrt(vs / vt). Moments come from one pass of the unadapted network.
    """
    layers = batchnorm_layers(model)[:count]
    for layer, (mt, vt), (ms, vs) in zip(layers, training, site, strict=False):
        weights = layer.get_weights()
        ratio = np.sqrt(vs / vt)
        weights[-2] = (ms - (mt - weights[-2]) * ratio).astype(np.float32)
        weights[-1] = (weights[-1] * ratio**2).astype(np.float32)
        layer.set_weights(weights)


if __name__ == "__main__":
    main()
