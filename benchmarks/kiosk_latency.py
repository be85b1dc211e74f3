"""Kiosk latency, throughput and memory, measured end to end on the real server.

Starts `python -m edge serve` on a free loopback port with a fresh data folder, then posts
full-resolution JPEG chest X-rays to /api/v1/predict: one client for the latency percentiles (the
whole request: upload, decode, quality gate, model, heatmap, de-identified copy, SQLite commit,
response), then several concurrent clients for throughput. Before the server starts, the bare model
invoke (the bundle's TFLite model on one ready 224 x 224 input, in this process) is timed the same
way, so the request's cost is also given as a multiple of the model's (target: at most 8x). The
server's resident memory is sampled throughout with psutil. Every request sends a different file
(one pixel differs), so the de-identified copy is written each time, as in a clinic.

The test image is a real training X-ray from ../shared/data upscaled in memory, or a synthetic one
when the data set is absent (said in the output).

    python benchmarks/kiosk_latency.py --model models/mobilenetv2-int8
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "chest_xray" / "train"
TARGET_P95_MS = 150.0
TARGET_RSS_MB = 200.0
TARGET_RATIO = 8.0
BOUNDARY = "kiosk-latency-boundary"
#: The benchmark's own operator access code: the API needs a credential (docs/kiosk.md).
ACCESS_CODE = "kiosk-latency-benchmark"


def main() -> int:
    args = parse_args()
    base, source = base_image(args.width, args.height, args.synthetic)
    total = args.warmup + args.requests + args.clients * args.requests_per_client
    print(
        f"image: {args.width}x{args.height} JPEG from {source}; preparing {total} distinct files", flush=True
    )
    bodies = [multipart(variant(base, k)) for k in range(total)]
    print(f"mean upload size {statistics.mean(len(b) for b in bodies) / 1e6:.2f} MB", flush=True)
    invokes, invoke_cpu_ms = bare_invoke(args.model, base, args.warmup, args.requests)

    with tempfile.TemporaryDirectory(prefix="kiosk-latency-") as data_dir:
        port = free_port()
        server = start_server(args.model, port, Path(data_dir), args.threads, args.scoring_slots)
        sampler = RssSampler(server.pid)
        sampler.start()
        try:
            wait_healthy(port, server)
            health = json.loads(request(port, "GET", "/healthz")[1])
            model = health["model"]
            print(f"server: model {model['name']} ({model['sha256'][:12]}), {health['runtime']}")
            process = psutil.Process(server.pid)
            idle_rss = process.memory_info().rss / 2**20
            cpu_before = process.cpu_times()
            latencies, server_ms = sequential(port, bodies[: args.warmup + args.requests], args.warmup)
            cpu_after = process.cpu_times()
            cpu_ms = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) * 1000.0
            cpu_ms /= args.warmup + args.requests
            sequential_peak = sampler.peak_mb
            throughput = concurrent(port, bodies[args.warmup + args.requests :], args.clients)
        finally:
            sampler.stop()
            server.terminate()
            server.wait(timeout=30)

    rss = (idle_rss, sequential_peak, sampler.peak_mb)
    report(args, latencies, (invokes, invoke_cpu_ms), server_ms, cpu_ms, throughput, rss)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the kiosk's request latency, throughput and memory on the real server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model", type=Path, default=REPO / "models" / "mobilenetv2-int8", help="model bundle"
    )
    parser.add_argument("--requests", type=int, default=100, help="timed sequential requests (one client)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for the throughput run")
    parser.add_argument(
        "--requests-per-client", type=int, default=25, help="requests each concurrent client sends"
    )
    parser.add_argument("--threads", type=int, default=4, help="server request threads (--threads of serve)")
    parser.add_argument("--scoring-slots", type=int, default=1, help="--scoring-slots of serve")
    parser.add_argument("--width", type=int, default=2000, help="test image width in pixels")
    parser.add_argument("--height", type=int, default=1700, help="test image height in pixels")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use a synthetic X-ray (the tiny test bundle refuses real ones)",
    )
    return parser.parse_args()


def base_image(width: int, height: int, synthetic: bool) -> tuple[np.ndarray, str]:
    """A gray X-ray at the clinic's resolution: a real one upscaled, or a synthetic one."""
    candidates = sorted((DATA / "PNEUMONIA").glob("*.jpeg")) if DATA.is_dir() and not synthetic else []
    if candidates:
        with Image.open(candidates[0]) as img:
            gray = img.convert("L").resize((width, height), Image.Resampling.BICUBIC)
        return np.asarray(gray, dtype=np.uint8).copy(), f"{candidates[0].name} (real, upscaled)"
    from lab.synthetic import synthetic_xray

    return synthetic_xray(seed=1, width=width, height=height), "a synthetic X-ray"


def bare_invoke(model_dir: Path, base: np.ndarray, warmup: int, runs: int) -> tuple[list[float], float]:
    """Milliseconds per model invoke alone (one prepared input, nothing decoded, drawn or stored),
    and the CPU time per invoke (all of this process's threads: a figure other load barely moves)."""
    sys.path.insert(0, str(REPO))
    from edge.bundle import load_bundle
    from edge.preprocess import XrayImage, to_model_input
    from edge.runtime import TfliteModel

    bundle = load_bundle(model_dir)
    model = TfliteModel(bundle.model_path)
    tensor = to_model_input(XrayImage(base, "JPEG", 0.0), bundle.input_size, bundle.intensity)
    timings = []
    for _ in range(warmup):
        model.run(tensor)
    cpu_started = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        model.run(tensor)
        timings.append((time.perf_counter() - started) * 1000.0)
    return timings, (time.process_time() - cpu_started) * 1000.0 / runs


def variant(base: np.ndarray, k: int) -> bytes:
    """The base image with one corner pixel changed: a distinct file, the same X-ray."""
    pixels = base.copy()
    pixels[0, 0], pixels[0, 1] = k % 256, (k // 256) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def multipart(jpeg: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="xray.jpeg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + jpeg + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, port: int, data_dir: Path, threads: int, slots: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "edge", "serve", "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--data-dir", str(data_dir), "--threads", str(threads),
        "--scoring-slots", str(slots),
    ]  # fmt: skip
    env = {**os.environ, "PNEUMOEDGE_ACCESS_CODE": ACCESS_CODE}  # the API needs a credential
    return subprocess.Popen(command, env=env)


def wait_healthy(port: int, server: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the kiosk exited with {server.returncode}; see its messages above")
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the kiosk did not answer /healthz within {timeout_s:.0f} s")


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        headers = {"Authorization": f"Bearer {ACCESS_CODE}"}
        if body:
            headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def predict(port: int, body: bytes, conn: http.client.HTTPConnection) -> dict:
    status, payload = request(port, "POST", "/api/v1/predict", body, conn)
    if status != 201:
        raise SystemExit(f"the kiosk answered {status}: {payload[:300]!r}")
    return json.loads(payload)


def sequential(port: int, bodies: list[bytes], warmup: int) -> tuple[list[float], list[float]]:
    """Whole-request latency (ms) as one client sees it, and the screener's own time per request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    latencies, server_ms = [], []
    try:
        for k, body in enumerate(bodies):
            started = time.perf_counter()
            case = predict(port, body, conn)
            elapsed = (time.perf_counter() - started) * 1000.0
            if case["status"] != "ok":
                raise SystemExit(f"the test image was refused: {case['detail']}")
            if k >= warmup:
                latencies.append(elapsed)
                server_ms.append(case["elapsed_ms"])
    finally:
        conn.close()
    return latencies, server_ms


def concurrent(port: int, bodies: list[bytes], clients: int) -> float:
    """Requests per second with `clients` clients sending their share back to back."""
    shares = [bodies[k::clients] for k in range(clients)]

    def client(share: list[bytes]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for body in share:
                predict(port, body, conn)
        finally:
            conn.close()
        return len(share)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client, shares))
    return done / (time.perf_counter() - started)


class RssSampler(threading.Thread):
    """The server's resident memory every 50 ms; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_mb = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            try:
                self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)
            except psutil.Error:
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def report(
    args: argparse.Namespace,
    latencies: list[float],
    invoke: tuple[list[float], float],
    server_ms: list[float],
    cpu_ms: float,
    throughput: float,
    rss_mb: tuple[float, float, float],
) -> None:
    """Print the numbers; `invoke` is the bare invokes' latencies and CPU time per invoke, `rss_mb`
    (after start-up, peak with one client, peak overall)."""
    invokes, invoke_cpu_ms = invoke
    p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
    idle_rss, sequential_rss, peak_rss = rss_mb
    print(f"\nkiosk latency, {len(latencies)} sequential requests (whole request, heatmap included):")
    print(f"  p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   max {max(latencies):7.1f} ms")
    print(f"  of which the screener (decode, gate, model, heatmap): p50 {percentile(server_ms, 50):.1f} ms")
    invoke_p50, invoke_p95 = percentile(invokes, 50), percentile(invokes, 95)
    ratio = p50 / invoke_p50
    print(f"bare model invoke, {len(invokes)} runs: p50 {invoke_p50:7.1f} ms   p95 {invoke_p95:7.1f} ms")
    print(f"request / bare invoke: p50 {ratio:.1f}x   p95 {p95 / invoke_p95:.1f}x")
    print(
        f"CPU time: {cpu_ms:.1f} ms per request, {invoke_cpu_ms:.1f} ms per bare invoke "
        f"({cpu_ms / invoke_cpu_ms:.1f}x)"
    )
    print(f"  server CPU time per request: {cpu_ms:.1f} ms (a floor for the latency on an idle machine)")
    print(f"throughput with {args.clients} concurrent clients: {throughput:.1f} requests/s")
    print(
        f"server RSS: {idle_rss:.0f} MB after start-up, peak {sequential_rss:.0f} MB with one client, "
        f"{peak_rss:.0f} MB with {args.clients}"
    )
    print(f"target p95 <= {TARGET_P95_MS:.0f} ms: {'met' if p95 <= TARGET_P95_MS else 'MISSED'}")
    print(f"target RSS <= {TARGET_RSS_MB:.0f} MB: {'met' if peak_rss <= TARGET_RSS_MB else 'MISSED'}")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"target request <= {TARGET_RATIO:.0f}x bare invoke (p50): {verdict}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work skews timings)")


if __name__ == "__main__":
    raise SystemExit(main())
