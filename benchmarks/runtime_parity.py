"""Runtime parity: does a bundle give the same answer on the same films under every TFLite runtime?

    python -m benchmarks.runtime_parity --python /work/venv-a/bin/python /work/venv-b/bin/python \
        [--model models/mobilenetv2-int8 ...] [--films ../shared/data/site-calibration] [--per-class 30] \
        [--kernels auto default] [--threads 1]

Each `--python` is the interpreter of one kiosk environment (ai-edge-litert, tflite-runtime...); each
scores the parity set (the first `--per-class` sorted films of each class folder, 60 by default) in
its own process through the kiosk's Screener (heatmap off) and hands back JSON. The first is the
reference: for every other runtime, model and kernel choice the script prints how many films got the
same verdict (status and label), the largest |difference| in probability, the films that differ, and
the median time per film (the whole assessment, and the model alone). Parity holds when every film
agrees and |dp| <= MAX_PROBABILITY_GAP; the exit status is 1 when it fails for the kiosk's own
kernels (`auto`). `--kernels default` shows what the runtimes' default kernels would give.

Run from the repository root (the workers import `edge` from it). Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILMS = REPO.parent / "shared" / "data" / "site-calibration"
DEFAULT_MODELS = (REPO / "models" / "mobilenetv2-int8", REPO / "models" / "mobilenetv2-float32")
PER_CLASS = 30
MAX_PROBABILITY_GAP = 0.05
FILM_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
WORKER_TIMEOUT_S = 600
MODEL_RUNS = 50  # timed runs of the model alone on the first film, per kernel choice
WARMUP_RUNS = 3


def parity_films(root: Path, per_class: int = PER_CLASS) -> list[Path]:
    """The first `per_class` sorted films of each class folder under `root`, classes in sorted order."""
    classes = sorted(p for p in Path(root).iterdir() if p.is_dir())
    films = [
        film
        for folder in classes
        for film in sorted(p for p in folder.iterdir() if p.suffix.lower() in FILM_SUFFIXES)[:per_class]
    ]
    if not films:
        raise FileNotFoundError(f"no films under {root}/<class>/ ({', '.join(sorted(FILM_SUFFIXES))})")
    return films


def model_latency(model: Path, image: Any, threads: int | None) -> dict[str, float]:
    """Median ms of the model alone per kernel choice, interleaved so machine load hits both alike."""
    import numpy as np

    from edge.bundle import load_bundle
    from edge.runtime import KERNELS_BUILTIN, KERNELS_DEFAULT, TfliteModel

    path = load_bundle(model).model_path
    runners = {k: TfliteModel(path, threads, k) for k in (KERNELS_BUILTIN, KERNELS_DEFAULT)}
    elapsed: dict[str, list[float]] = {k: [] for k in runners}
    for run in range(WARMUP_RUNS + MODEL_RUNS):
        for kernels, runner in runners.items():
            started = time.perf_counter()
            runner.run(image)
            if run >= WARMUP_RUNS:
                elapsed[kernels].append((time.perf_counter() - started) * 1000.0)
    return {k: float(np.median(v)) for k, v in elapsed.items()}


def score(
    model: Path, films: list[Path], kernels: str, threads: int | None, time_kernels: bool = True
) -> dict[str, Any]:
    """In this process: the kiosk's verdict on every film, the runtime's name, and times per film."""
    import numpy as np

    from edge.preprocess import load_xray, to_model_input
    from edge.screener import Screener, ScreenerOptions

    screener = Screener.from_path(model, ScreenerOptions(num_threads=threads, heatmap=False, kernels=kernels))
    results, elapsed = {}, []
    for film in films:
        data = film.read_bytes()
        started = time.perf_counter()
        assessment = screener.assess(data)
        elapsed.append((time.perf_counter() - started) * 1000.0)
        results[f"{film.parent.name}/{film.name}"] = {
            "status": assessment.status,
            "reason": assessment.reason,
            "label": assessment.label,
            "probability": assessment.probability,
            "ood_score": assessment.ood_score,
        }
    image = to_model_input(
        load_xray(films[0].read_bytes()), screener.bundle.input_size, screener.bundle.intensity
    )
    model_ms = model_latency(model, image, threads) if time_kernels else {}
    return {
        "runtime": screener.model.runtime_name,
        "machine": platform.machine(),
        "kernels": screener.model.kernels,
        "film_ms": float(np.median(elapsed)),
        "model_ms": model_ms,
        "films": results,
    }


def score_in(
    python: str,
    model: Path,
    films: list[Path],
    kernels: str,
    threads: int | None,
    time_kernels: bool = True,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> dict[str, Any]:
    """`score` run by another environment's interpreter, as a subprocess that prints JSON."""
    command = [python, "-m", "benchmarks.runtime_parity", "--worker", "--model", str(model)]
    command += ["--kernels", kernels, "--threads", str(threads or 0)]
    command += [] if time_kernels else ["--no-latency"]
    done = subprocess.run(
        command,
        input="\n".join(str(f) for f in films),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} failed on {model.name}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


@dataclass
class Comparison:
    """One runtime's verdicts against the reference's, film by film."""

    films: int = 0
    agree: int = 0
    max_gap: float = 0.0
    differing: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return self.agree == self.films and self.max_gap <= MAX_PROBABILITY_GAP


def compare(reference: dict[str, Any], other: dict[str, Any]) -> Comparison:
    """Same status and label on every film, and the largest probability gap; a film differs on either."""
    result = Comparison()
    for name, ref in reference["films"].items():
        got = other["films"][name]
        result.films += 1
        same = (ref["status"], ref["label"]) == (got["status"], got["label"])
        result.agree += same
        gap = 0.0
        if ref["probability"] is not None and got["probability"] is not None:
            gap = abs(ref["probability"] - got["probability"])
            result.max_gap = max(result.max_gap, gap)
        if not same or gap > MAX_PROBABILITY_GAP:
            result.differing.append(f"{name}: {_verdict(ref)} vs {_verdict(got)}")
    return result


def _verdict(verdict: dict[str, Any]) -> str:
    probability = "-" if verdict["probability"] is None else f"{verdict['probability']:.3f}"
    return f"{verdict['label'] or verdict['status']} {probability}"


#: film ms: the whole assessment; model ms: the model alone, on the built-in / the default kernels.
HEADER = (
    f"  {'runtime (machine)':34} {'kernels':16} {'agree':>7} {'max |dp|':>9} {'film ms':>8} "
    f"{'model ms':>15}  parity"
)


def _model_ms(model_ms: dict[str, float]) -> str:
    return " / ".join(f"{model_ms[k]:.1f}" for k in ("builtin", "default")) if model_ms else "-"


def _row(kernels: str, run: dict[str, Any], result: Comparison) -> str:
    ran = kernels if kernels == run["kernels"] else f"{kernels} ({run['kernels']})"
    where = f"{run['runtime']} ({run['machine']})"
    return (
        f"  {where:34} {ran:16} {result.agree:>3}/{result.films:<3} {result.max_gap:9.4f} "
        f"{run['film_ms']:8.1f} {_model_ms(run['model_ms']):>15}  {'yes' if result.holds else 'NO'}"
    )


def _worker(args: argparse.Namespace) -> None:
    films = [Path(line) for line in sys.stdin.read().splitlines() if line]
    print(json.dumps(score(args.model, films, args.kernels, args.threads, not args.no_latency)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", nargs="+", default=[sys.executable], help="one interpreter per runtime")
    parser.add_argument("--model", nargs="+", type=Path, default=list(DEFAULT_MODELS))
    parser.add_argument("--films", type=Path, default=DEFAULT_FILMS)
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--kernels", nargs="+", default=["auto"], help="auto, builtin and/or default")
    parser.add_argument(
        "--threads", type=int, default=1, help="interpreter threads (0: the runtime's choice)"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip timing the model alone")
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=WORKER_TIMEOUT_S,
        help="seconds one runtime may take for one model (emulated aarch64: about 10 s per float32 film)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = args.threads or None
    if args.worker:
        args.model = args.model[0]
        args.kernels = args.kernels[0]
        _worker(args)
        return 0
    films = parity_films(args.films, args.per_class)
    print(f"parity set: {len(films)} films from {args.films}")
    print(f"parity: the same verdict on every film and |dp| <= {MAX_PROBABILITY_GAP}")
    broken = False
    for model in args.model:
        runs = {
            (k, py): score_in(py, model, films, k, args.threads, not args.no_latency, args.worker_timeout)
            for k in args.kernels
            for py in args.python
        }
        reference = runs[("auto" if "auto" in args.kernels else args.kernels[0], args.python[0])]
        print(
            f"\n{model.name} (reference: {reference['runtime']} on {reference['machine']}, "
            f"{reference['kernels']} kernels)"
        )
        print(HEADER)
        for (kernels, _), run in runs.items():
            result = compare(reference, run)
            broken |= kernels == "auto" and not result.holds
            print(_row(kernels, run, result))
            for line in result.differing:
                print(f"      {line}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
