"""Latency and peak memory of one model on one runtime, measured in a fresh process.

Each (model, runtime, thread count) runs in its own subprocess so that memory from one model or
runtime (TensorFlow alone is hundreds of MB) never shows up in another's figures. The child prints
one JSON line; `measure` starts it and reads that line.

Child: python -m quantize.latency --model M --runtime ai-edge-litert --threads 1 --runs 100 --input X.npy
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.runtime import RUNTIMES, load_interpreter_class, open_interpreter, quantise_input

log = logging.getLogger(__name__)

WARMUP_RUNS = 5


@dataclass(frozen=True)
class Timing:
    """p50/p95 latency in ms over `runs` invocations, and the process's peak RSS."""

    runtime: str
    threads: int
    runs: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    peak_rss_mb: float  # whole process after the timed runs: interpreter, model, Python, numpy
    rss_before_model_mb: float  # the same process after importing the runtime, before loading the model


def installed_runtimes() -> list[str]:
    """Runtimes importable here, found without importing them (TensorFlow is slow to import)."""
    return [name for name, (module, _, _) in RUNTIMES.items() if _findable(module.split(".")[0])]


def _findable(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _memory_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process, from /proc.

    Not getrusage: its ru_maxrss survives exec, so a child would report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError(f"/proc/self/status has no {field}; peak memory needs Linux")


def time_model(model_path: Path, runtime: str, threads: int, runs: int, image: np.ndarray) -> Timing:
    """In this process: load, warm up, then time `runs` calls of the signature runner."""
    interpreter_class, _ = load_interpreter_class((RUNTIMES[runtime],))
    rss_before = _memory_mb("VmRSS")
    interpreter, _ = open_interpreter(interpreter_class, model_path, threads)
    runner = interpreter.get_signature_runner()
    (name, details), *_ = runner.get_input_details().items()
    tensor = quantise_input(image[np.newaxis].astype(np.float32), details)
    for _ in range(WARMUP_RUNS):
        runner(**{name: tensor})
    elapsed = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        runner(**{name: tensor})
        elapsed[i] = (time.perf_counter() - start) * 1000.0
    return Timing(
        runtime=runtime,
        threads=threads,
        runs=runs,
        p50_ms=float(np.percentile(elapsed, 50)),
        p95_ms=float(np.percentile(elapsed, 95)),
        mean_ms=float(elapsed.mean()),
        peak_rss_mb=_memory_mb("VmHWM"),
        rss_before_model_mb=rss_before,
    )


def measure(model_path: Path, runtime: str, threads: int, runs: int, input_path: Path) -> Timing:
    """Run `time_model` in a fresh Python process and return its figures."""
    command = [
        sys.executable, "-m", "quantize.latency",
        "--model", str(model_path), "--runtime", runtime, "--threads", str(threads),
        "--runs", str(runs), "--input", str(input_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"timing {model_path} on {runtime} with {threads} threads failed: {result.stderr.strip()[-2000:]}"
        )
    return Timing(**json.loads(result.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.latency", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--runtime", choices=list(RUNTIMES), required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--input", type=Path, required=True, help=".npy uint8 image (s, s, c)")
    args = parser.parse_args(argv)
    timing = time_model(args.model, args.runtime, args.threads, args.runs, np.load(args.input))
    sys.stdout.write(json.dumps(timing.__dict__) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
