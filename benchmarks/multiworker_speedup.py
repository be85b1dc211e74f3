"""Speed-up of MultiWorkerMirroredStrategy with 2 local workers against 1, on the same data.

Both runs train the same model (MobileNet v1 alpha 0.25 by default, random weights) on the same
synthetic films with the same global batch for the same number of steps, through
fleet.distributed (explicit per-worker shards, RING all-reduce over loopback gRPC). The first
epoch (graph building, first collectives) is left out; the figure is films per second over the
remaining epochs, as the chief measured them.

    nice -n 19 .venv/bin/python benchmarks/multiworker_speedup.py

On one machine the two workers share its cores and memory bandwidth, so expect little or none: the
number says what the all-reduce and the second process cost, not what a cluster gains.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worker(args: argparse.Namespace) -> None:
    """One worker: train, and the chief writes its per-epoch wall times to args.out."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from fleet.distributed import cluster_spec, distributed_batches, fit, make_strategy
    from lab.tf_env import keras, tf

    _, _, chief = cluster_spec()
    strategy = make_strategy()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.films, args.size, args.size, 1)).astype(np.float32)
    labels = (np.arange(args.films) % 2).astype(np.float32)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((args.size, args.size, 1))
        x = keras.layers.Concatenate()([inputs, inputs, inputs])
        x = keras.applications.MobileNet(input_tensor=x, alpha=0.25, include_top=False, weights=None).output
        x = keras.layers.GlobalAveragePooling2D()(x)
        net = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
        net.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")

    def make_dataset(pipelines: int, pipeline: int, per_replica: int) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((images, labels)).shard(pipelines, pipeline)
        return ds.repeat().batch(per_replica, drop_remainder=True).prefetch(2)

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds.append(time.perf_counter() - self.started)

    seconds: list[float] = []
    batches = distributed_batches(strategy, make_dataset, args.global_batch)
    with tempfile.TemporaryDirectory() as backup:
        fit(net, batches, (0, args.epochs), args.steps, Path(backup) / "b", [Clock()])
    if chief:
        Path(args.out).write_text(json.dumps(seconds))


def run(workers: int, args: argparse.Namespace, out: Path) -> list[float]:
    ports = []
    for _ in range(workers):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(workers):
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "",
            "TF_USE_LEGACY_KERAS": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
        }
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}}
        )
        command = [sys.executable, __file__, "--worker", "--out", str(out), *_shared(args)]
        processes.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            sys.exit(f"a worker failed:\n{err.decode()[-2000:]}")
    return json.loads(out.read_text())


def _shared(args: argparse.Namespace) -> list[str]:
    return [
        f"--films={args.films}",
        f"--size={args.size}",
        f"--global-batch={args.global_batch}",
        f"--steps={args.steps}",
        f"--epochs={args.epochs}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--films", type=int, default=512)
    parser.add_argument("--size", type=int, default=96, help="film side in pixels")
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="the first is warm-up and not counted")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    print(
        f"MobileNet v1 alpha 0.25, {args.size} px, global batch {args.global_batch}, "
        f"{args.steps} steps x {args.epochs - 1} timed epochs"
    )
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            seconds = run(workers, args, Path(tmp) / f"{workers}.json")[1:]
            rates[workers] = args.steps * args.global_batch * len(seconds) / sum(seconds)
            per_epoch = ", ".join(f"{s:.2f}" for s in seconds)
            print(f"{workers} worker(s): {rates[workers]:.1f} films/s (epoch seconds {per_epoch})")
    print(f"speed-up of 2 local workers over 1: {rates[2] / rates[1]:.2f}x")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
