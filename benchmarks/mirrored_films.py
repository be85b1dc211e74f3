"""Mirrored films: what a bundle answers for a film flipped left to right.

    python benchmarks/mirrored_films.py [--model models/mobilenetv2-int8] \
        [--films ../shared/data/site-calibration]

A film exported or scanned the wrong way round (heart on the right) passes the quality gate, whose
checks are symmetric; this measures what the model then says. Every film of the folder (Kermany
layout) is scored through the kiosk's Screener as loaded and mirrored: AUC, sensitivity and
specificity at the bundle's threshold (a refusal counted as a wrong answer), refusals, and how many
labels the mirroring changes. The site films set the shipped threshold, so the absolute figures are
optimistic; the difference between the two rows is the point. Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from edge.kermany import scan_split
from edge.preprocess import load_xray
from edge.screener import default_model_dir
from lab.shift import operating_figures, transformed
from quantize.benchmark import kiosk_scorer

DEFAULT_FILMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "site-calibration"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="bundle folder")
    parser.add_argument(
        "--films", type=Path, default=DEFAULT_FILMS, help="folder with NORMAL/ and PNEUMONIA/"
    )
    args = parser.parse_args(argv)

    bundle = load_bundle(args.model)
    samples = scan_split(args.films.parent, args.films.name)
    films = [load_xray(sample.path.read_bytes()) for sample in samples]
    labels = np.array([sample.label for sample in samples])
    score = kiosk_scorer(bundle, threads=2)
    threshold = bundle.threshold
    loaded = score(films)
    mirrored = score(transformed(films, np.fliplr))
    print(f"{bundle.name} (sha256 {bundle.model_sha256[:12]}), threshold {threshold:.4f}, {len(films)} films")
    for name, probabilities in (("as loaded", loaded), ("mirrored", mirrored)):
        f = operating_figures(labels, probabilities, threshold)
        low, high = f["sensitivity_ci95"]
        spec_low, spec_high = f["specificity_ci95"]
        print(
            f"  {name:<10} AUC {f['auc']:.3f}  sensitivity {f['sensitivity']:.3f} ({low:.3f}-{high:.3f})  "
            f"specificity {f['specificity']:.3f} ({spec_low:.3f}-{spec_high:.3f})  refused {f['refused']}"
        )
    both = ~np.isnan(loaded) & ~np.isnan(mirrored)
    changed = int(np.sum((loaded[both] >= threshold) != (mirrored[both] >= threshold)))
    gap = np.abs(loaded[both] - mirrored[both])
    print(
        f"  mirroring changed {changed} of {int(both.sum())} labels; |dp| median {np.median(gap):.3f}, "
        f"max {gap.max():.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
