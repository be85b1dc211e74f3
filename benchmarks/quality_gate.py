"""Measure the quality gate: how many genuine X-rays it refuses, and how many non-X-rays it catches.

    python benchmarks/quality_gate.py --data ../shared/data/chest_xray --model models/mobilenetv2-int8 \
        [--photos DIR ...] [--screenshots DIR ...] [--genuine DIR ...] [--limit N] [--orientation-only]

Genuine X-rays: every image of the split (the gate's false-reject rate, with a 95% Wilson interval,
must stay below 1%). Non-X-rays: natural photographs found in folders you name (by default the
sample images shipped with matplotlib, when it is installed), the same photographs turned gray (the
hard case: no colour to give them away), real screenshots from folders you name, and screenshots,
documents and noise rendered here with Pillow. Nothing is downloaded and nothing is written.

Orientation and polarity (model-free, image-level checks only): each genuine set (the split, plus
`fullres-dev/` and `site-calibration/` beside the data folder, or the folders named by --genuine)
as loaded, and every film of it inverted (255 - x) and turned by 90, 180 and 270 degrees: false
refusals of the genuine films, catches of the transformed ones (refused with the right code), and
the time of the check on a 9-megapixel film. Then every 5th film of the split altered as a clinic
might (the robustness suite, tilts, borders, tighter framing, gamma): what the image-level checks
(orientation, polarity, film layout) refuse of each. `--orientation-only` prints just this part
(no model).
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from edge.kermany import scan_split
from edge.metrics import wilson_interval
from edge.preprocess import ImageError, XrayImage, load_xray, to_model_input
from edge.quality import INVERTED, ROTATED, OodStats, QualityThresholds, check_image, orientation_scores
from edge.screener import STATUS_REJECTED, Screener, ScreenerOptions, default_model_dir
from lab.shift import SUITE, Transform, crop_border, gamma, rotate

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
MAX_FALSE_REJECT_RATE = 0.01


@dataclass
class Tally:
    """Verdicts for one category of images."""

    name: str
    total: int = 0
    rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    passed_names: list[str] = field(default_factory=list)

    def add(self, name: str, reason: str | None) -> None:
        self.total += 1
        if reason is None:
            self.passed_names.append(name)
        else:
            self.rejected += 1
            self.reasons[reason] += 1


def verdict(screener: Screener, data: bytes) -> str | None:
    """The gate's refusal code for one file, None when the screener would score it."""
    try:
        result = screener.assess(data)
    except ImageError as e:
        return f"undecodable:{e.reason}"
    return result.reason if result.status == STATUS_REJECTED else None


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG") -> bytes:
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt)
    return buffer.getvalue()


# --- the images ---------------------------------------------------------------------------------


def default_photo_dirs() -> list[Path]:
    """matplotlib's shipped sample images, when matplotlib is installed."""
    try:
        import matplotlib
    except ImportError:
        return []
    return [Path(matplotlib.get_data_path()) / "sample_data"]


def files_in(folders: Iterable[Path]) -> list[Path]:
    found = []
    for folder in folders:
        found += [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES]
    return found


def gray_version(data: bytes) -> bytes | None:
    """The photograph as an 8-bit gray PNG (None when Pillow cannot read it)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return encode(img.convert("RGB").convert("L"))
    except (OSError, ValueError):
        return None


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def screenshot(seed: int, gray: bool) -> bytes:
    """A rendered desktop window: title bar, sidebar, text lines, buttons."""
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(800, 1920)), int(rng.integers(600, 1200))
    accent = tuple(int(v) for v in rng.integers(30, 220, size=3))
    img = Image.new("RGB", (width, height), (240, 240, 240))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width, 40], fill=accent)
    draw.text((12, 8), f"Patient viewer - window {seed}", fill=(255, 255, 255), font=_font(20))
    draw.rectangle([0, 40, width // 5, height], fill=(220, 222, 228))
    for row in range(int(rng.integers(10, 30))):
        y = 60 + row * 28
        draw.text((width // 5 + 20, y), "Lorem ipsum dolor sit amet " * 3, fill=(20, 20, 20), font=_font(16))
        if row % 7 == 3:
            draw.rectangle([width - 180, y, width - 40, y + 24], fill=accent, outline=(0, 0, 0))
    if rng.random() < 0.5:  # an embedded picture
        x0, y0 = int(width * 0.55), int(height * 0.35)
        draw.ellipse([x0, y0, x0 + width // 4, y0 + height // 3], fill=(90, 90, 90))
    return encode(img.convert("L") if gray else img)


def colour_screenshot(seed: int) -> bytes:
    return screenshot(seed, gray=False)


def gray_screenshot(seed: int) -> bytes:
    return screenshot(seed, gray=True)


def document(seed: int) -> bytes:
    """A scanned-looking letter page: dark text and a table on white, slight gray and noise."""
    rng = np.random.default_rng(seed)
    width, height = 850, 1100
    img = Image.new("L", (width, height), int(rng.integers(225, 250)))
    draw = ImageDraw.Draw(img)
    draw.text((80, 60), "DISCHARGE SUMMARY", fill=10, font=_font(32))
    y = 130
    words = ["patient", "chest", "history", "fever", "cough", "treatment", "review", "days", "normal"]
    while y < height - 120:
        line = " ".join(rng.choice(words, size=int(rng.integers(6, 11))))
        draw.text((80, y), line, fill=int(rng.integers(0, 60)), font=_font(18))
        y += 28
        if rng.random() < 0.05:
            for k in range(5):
                draw.rectangle([80, y + 24 * k, width - 80, y + 24 * (k + 1)], outline=30)
            y += 140
    pixels = np.asarray(img, dtype=np.float64) + rng.normal(0, 4, size=(height, width))
    return encode(np.clip(pixels, 0, 255).astype(np.uint8), "JPEG")


def noise(seed: int) -> bytes:
    """Uniform, Gaussian, smooth-blob and gradient noise, in turn."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(300, 1200)), int(rng.integers(300, 1200)))
    kind = seed % 4
    if kind == 0:
        pixels = rng.integers(0, 256, size=shape)
    elif kind == 1:
        pixels = rng.normal(128, 50, size=shape)
    elif kind == 2:
        blobs = Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8))
        blurred = np.asarray(blobs.filter(ImageFilter.GaussianBlur(radius=12)), dtype=np.float64)
        pixels = (blurred - blurred.mean()) * 6 + 128
    else:
        pixels = np.linspace(0, 255, shape[1])[np.newaxis, :] + rng.normal(0, 10, size=shape)
    return encode(np.clip(pixels, 0, 255).astype(np.uint8))


# --- measuring ----------------------------------------------------------------------------------


def measure(screener: Screener, name: str, items: Iterable[tuple[str, bytes]]) -> Tally:
    tally = Tally(name)
    for item_name, data in items:
        tally.add(item_name, verdict(screener, data))
    return tally


def measure_xrays(screener: Screener, paths: list[Path]) -> tuple[Tally, np.ndarray, float]:
    """Verdicts for the genuine X-rays, their ood scores (where the model ran), and ms per image."""
    ood = OodStats.from_metadata(screener.bundle.metadata.get("ood"))
    tally, scores = Tally("genuine X-rays"), []
    started = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        tally.add(path.name, verdict(screener, data))
        image = load_xray(data)
        if ood is not None and check_image(image, screener.options.quality).passed:
            embedding = screener.model.run(
                to_model_input(image, screener.bundle.input_size, screener.bundle.intensity)
            )["embedding"]
            scores.append(ood.score(embedding))
    elapsed_ms = (time.perf_counter() - started) * 1000 / max(1, len(paths))
    return tally, np.asarray(scores), elapsed_ms


def report_xrays(tally: Tally, scores: np.ndarray, ms: float, threshold: float | None) -> bool:
    rate = tally.rejected / max(1, tally.total)
    low, high = wilson_interval(tally.rejected, tally.total)
    print(f"\nGenuine X-rays: {tally.total} images, {ms:.1f} ms each (gate + model, twice the model here)")
    print(
        f"  false-reject rate {rate:.2%} (95% CI {low:.2%} to {high:.2%}), "
        f"target < {MAX_FALSE_REJECT_RATE:.0%}"
    )
    for reason, count in tally.reasons.most_common():
        print(f"    {reason}: {count}")
    if scores.size and threshold is not None:
        p50, p99, top = np.percentile(scores, [50, 99, 100])
        print(f"  ood rms_z: median {p50:.2f}, p99 {p99:.2f}, max {top:.2f}; threshold {threshold:.2f}")
    return rate < MAX_FALSE_REJECT_RATE


def report_catches(tallies: list[Tally]) -> None:
    print("\nNon-X-ray images caught by the gate:")
    print(f"  {'category':<28} {'caught':>10} {'rate':>7}  reasons")
    for tally in tallies:
        if tally.total == 0:
            print(f"  {tally.name:<28} {'(none found)':>10}")
            continue
        reasons = ", ".join(f"{reason} {count}" for reason, count in tally.reasons.most_common())
        rate = tally.rejected / tally.total
        print(f"  {tally.name:<28} {tally.rejected:>4}/{tally.total:<5} {rate:>7.1%}  {reasons}")
        if tally.passed_names:
            print(f"  {'':<28} passed: {', '.join(tally.passed_names[:12])}")


#: Transformed copies of each genuine film and the refusal code that should catch each.
TRANSFORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "inverted (255 - x)": (lambda px: 255 - px, INVERTED),
    "rotated 90": (lambda px: np.rot90(px, 1), ROTATED),
    "rotated 180": (lambda px: np.rot90(px, 2), ROTATED),
    "rotated 270": (lambda px: np.rot90(px, 3), ROTATED),
}


def border(fraction: float, value: int, noise_std: float = 0.0) -> Transform:
    """A plain surround (a padded export), or a noisy one (a film photographed on a light box)."""

    def apply(pixels: np.ndarray) -> np.ndarray:
        dy, dx = round(pixels.shape[0] * fraction), round(pixels.shape[1] * fraction)
        padded = np.pad(pixels, ((dy, dy), (dx, dx)), constant_values=value).astype(np.float32)
        surround = np.ones(padded.shape, dtype=bool)
        surround[dy : dy + pixels.shape[0], dx : dx + pixels.shape[1]] = False
        padded[surround] += np.random.default_rng(0).normal(0.0, noise_std, int(surround.sum()))
        return np.clip(np.rint(padded), 0, 255).astype(np.uint8)

    return apply


#: Genuine films altered as a clinic might: the robustness suite, then harsher changes. The gate
#: should refuse none of the suite; tilts beyond about 20 degrees are refused on purpose.
ALTERATIONS: dict[str, Transform] = {
    **SUITE,
    "tilt +10 degrees": rotate(10.0),
    "tilt -10 degrees": rotate(-10.0),
    "tilt +20 degrees": rotate(20.0),
    "tilt -20 degrees": rotate(-20.0),
    "tilt 30 degrees": rotate(30.0),
    "tilt 45 degrees": rotate(45.0),
    "black border 15%": border(0.15, 0),
    "gray border 15%": border(0.15, 128),
    "white border 15%": border(0.15, 255),
    "light box 5%, noise std 8": border(0.05, 230, noise_std=8.0),
    "tighter framing 20%, same size": crop_border(0.2),
    "gamma 0.6": gamma(0.6),
    "gamma 1.6": gamma(1.6),
}


def run_alterations(name: str, paths: list[Path], limits: QualityThresholds, every: int = 5) -> None:
    """Image-level verdicts on every `every`-th genuine film under each alteration."""
    chosen = paths[::every]
    films = [load_xray(path.read_bytes()).pixels for path in chosen]
    print(f"\nGenuine films altered ({len(films)}: every {every}th of {name}; image-level checks only):")
    for change_name, change in ALTERATIONS.items():
        tally = Tally(change_name)
        for path, pixels in zip(chosen, films, strict=True):
            tally.add(path.name, check_image(XrayImage(change(pixels), "JPEG", 0.0), limits).reason)
        reasons = ", ".join(f"{reason} {count}" for reason, count in tally.reasons.most_common()) or "-"
        rate = tally.rejected / max(1, tally.total)
        print(f"  {change_name:<40} refused {tally.rejected:>4}/{tally.total:<5} ({rate:5.1%})  {reasons}")


def genuine_sets(data: Path, split: str, extra: list[Path] | None) -> list[tuple[str, list[Path]]]:
    """The split's films, plus fullres-dev/ and site-calibration/ beside `data` (or the --genuine folders)."""
    sets = [(f"{data.name}/{split}", [sample.path for sample in scan_split(data, split)])]
    folders = extra if extra is not None else [data.parent / "fullres-dev", data.parent / "site-calibration"]
    for folder in folders:
        if folder.is_dir():
            sets.append((folder.name, files_in([folder])))
        else:
            print(f"(no genuine set at {folder})")
    return sets


def measure_orientation(name: str, paths: list[Path], limits: QualityThresholds) -> list[Tally]:
    """Image-level verdicts on each film as loaded and on each transformed copy."""
    tallies = [Tally(name)] + [Tally(transform) for transform in TRANSFORMS]
    for path in paths:
        pixels = load_xray(path.read_bytes()).pixels
        tallies[0].add(path.name, check_image(XrayImage(pixels, "JPEG", 0.0), limits).reason)
        for tally, (transform, _) in zip(tallies[1:], TRANSFORMS.values(), strict=True):
            image = XrayImage(np.ascontiguousarray(transform(pixels)), "JPEG", 0.0)
            tally.add(path.name, check_image(image, limits).reason)
    return tallies


def report_orientation(tallies: list[Tally]) -> bool:
    genuine, transformed = tallies[0], tallies[1:]
    low, high = wilson_interval(genuine.rejected, genuine.total)
    reasons = ", ".join(f"{reason} {count}" for reason, count in genuine.reasons.most_common()) or "-"
    print(
        f"  {genuine.name}: {genuine.rejected}/{genuine.total} genuine films refused "
        f"({genuine.rejected / max(1, genuine.total):.2%}, 95% CI {low:.2%}-{high:.2%}; {reasons})"
    )
    for tally, (_, code) in zip(transformed, TRANSFORMS.values(), strict=True):
        right = tally.reasons[code]
        print(
            f"    {tally.name:<20} caught {right:>5}/{tally.total:<5} ({right / max(1, tally.total):6.1%}) "
            f"as {code}; refused for any reason {tally.rejected}"
        )
    return genuine.rejected / max(1, genuine.total) < MAX_FALSE_REJECT_RATE


def time_orientation(film: Path, limits: QualityThresholds, repeats: int = 20) -> tuple[float, float]:
    """ms per call of the orientation scores and of all image-level checks on a 3000 x 3000 film."""
    with Image.open(film) as img:
        big = np.asarray(img.convert("L").resize((3000, 3000), Image.Resampling.BICUBIC))
    image = XrayImage(big, "JPEG", 0.0)
    timings = []
    for call in (lambda: orientation_scores(big), lambda: check_image(image, limits)):
        call()
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        timings.append((time.perf_counter() - started) * 1000 / repeats)
    return timings[0], timings[1]


def run_orientation(sets: list[tuple[str, list[Path]]], limits: QualityThresholds) -> bool:
    print("\nOrientation and polarity (image-level checks only, no model):")
    ok = True
    for name, paths in sets:
        ok &= report_orientation(measure_orientation(name, paths, limits))
    if sets and sets[0][1]:
        scores_ms, gate_ms = time_orientation(sets[0][1][0], limits)
        print(
            f"  time on a 9 MP film: orientation scores {scores_ms:.1f} ms, all image checks {gate_ms:.1f} ms"
        )
    return ok


def read_all(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        yield path.name, path.read_bytes()


def rendered(count: int, make: Callable[[int], bytes], prefix: str) -> Iterator[tuple[str, bytes]]:
    for seed in range(count):
        yield f"{prefix}{seed}", make(seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"), help="Kermany root")
    parser.add_argument("--split", default="train", help="split folder of genuine X-rays (default: train)")
    parser.add_argument("--model", type=Path, default=default_model_dir(), help="model bundle folder")
    parser.add_argument("--photos", type=Path, action="append", help="folder of natural photos (repeatable)")
    parser.add_argument("--screenshots", type=Path, action="append", help="folder of real screenshots")
    parser.add_argument("--limit", type=int, default=0, help="score about N X-rays, evenly spaced (0: all)")
    parser.add_argument("--rendered", type=int, default=40, help="rendered images per synthetic category")
    parser.add_argument("--genuine", type=Path, action="append", help="folder of genuine films (repeatable)")
    parser.add_argument(
        "--orientation-only", action="store_true", help="only the orientation/polarity figures (no model)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    sets = genuine_sets(args.data, args.split, args.genuine)
    if args.limit:
        sets = [(name, paths[:: max(1, math.ceil(len(paths) / args.limit))]) for name, paths in sets]
    orientation_ok = run_orientation(sets, QualityThresholds())
    run_alterations(*sets[0], QualityThresholds())
    if args.orientation_only:
        return 0 if orientation_ok else 1

    screener = Screener.from_path(args.model, ScreenerOptions(heatmap=False))
    ood = screener.bundle.metadata.get("ood") or {}
    bundle = screener.bundle
    print(f"model {bundle.name} (sha256 {bundle.model_sha256[:12]}), {screener.model.runtime_name}")
    print(f"limits {screener.options.quality}")

    paths = [sample.path for sample in scan_split(args.data, args.split)]
    if args.limit and args.limit < len(paths):
        paths = paths[:: math.ceil(len(paths) / args.limit)]
    tally, scores, ms = measure_xrays(screener, paths)
    ok = report_xrays(tally, scores, ms, ood.get("threshold"))

    photos = files_in(args.photos or default_photo_dirs())
    photo_items = list(read_all(photos))
    gray_items = [(name, gray) for name, data in photo_items if (gray := gray_version(data)) is not None]
    screenshots = files_in(args.screenshots or [])
    tallies = [
        measure(screener, "natural photos", photo_items),
        measure(screener, "natural photos, gray", gray_items),
        measure(screener, "real screenshots", read_all(screenshots)),
        measure(screener, "screenshots, colour", rendered(args.rendered, colour_screenshot, "colour")),
        measure(screener, "screenshots, gray", rendered(args.rendered, gray_screenshot, "gray")),
        measure(screener, "documents", rendered(args.rendered, document, "doc")),
        measure(screener, "noise", rendered(args.rendered, noise, "noise")),
    ]
    report_catches(tallies)
    if not ok:
        print(f"\nFAIL: the gate refuses {tally.rejected}/{tally.total} genuine X-rays", file=sys.stderr)
    if not orientation_ok:
        print("\nFAIL: the image-level checks refuse 1% or more of a genuine set", file=sys.stderr)
    return 0 if ok and orientation_ok else 1


if __name__ == "__main__":
    sys.exit(main())
