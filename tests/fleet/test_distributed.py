"""Two workers on loopback with MultiWorkerMirroredStrategy: they agree, and match one process.

Tolerance: the two workers apply one all-reduced gradient, so their weights must be identical. One
process computes the same global batch's gradient with another summation order, so float32 rounding
(about 1e-7 relative per operation) builds up over the 8 SGD steps to about 1e-6; we allow 1e-5.
A sharding mistake (a film seen twice, another missed) moves the weights by about 1e-2 here, and
training moves them by far more than the tolerance (asserted), so the comparison can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # four TensorFlow processes: 1-2 minutes on 2 loaded cores

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker(out: Path, epochs: int, tf_config: dict | None) -> subprocess.Popen:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    command = [sys.executable, "-m", "tests.fleet.multiworker_worker", str(out), str(epochs)]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait(*processes: subprocess.Popen) -> None:
    for process in processes:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output.decode()[-3000:]


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as stored:
        return [stored[key] for key in sorted(stored.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The single-process reference: 2 epochs of 4 steps."""
    out = tmp_path_factory.mktemp("one")
    wait(worker(out, 2, None))
    return out


def test_two_workers_on_loopback_agree_and_match_one_process(tmp_path: Path, one: Path) -> None:
    cluster = [f"127.0.0.1:{port}" for port in free_ports(2)]
    two = tmp_path / "two"
    two.mkdir()
    configs = [{"cluster": {"worker": cluster}, "task": {"type": "worker", "index": i}} for i in (0, 1)]
    wait(*[worker(two, 2, config) for config in configs])

    chief, other = weights(two / "weights-0.npz"), weights(two / "weights-1.npz")
    single, initial = weights(one / "weights-0.npz"), weights(one / "initial-0.npz")
    for a, b in zip(chief, other, strict=True):
        np.testing.assert_array_equal(a, b)  # one all-reduced update: identical on every worker
    for a, b in zip(chief, single, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(single, initial, strict=True))
    assert moved > 100 * TOLERANCE  # training really moved the weights: the comparison can fail
    assert (two / "history.csv").is_file()
    assert len((two / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs, chief only
    assert sorted(p.name for p in two.iterdir() if p.suffix == ".csv") == ["history.csv"]


def test_a_restarted_worker_resumes_from_the_last_finished_epoch(tmp_path: Path, one: Path) -> None:
    shutil.copytree(one, tmp_path, dirs_exist_ok=True)  # a run stopped after its 2nd epoch's backup
    first = weights(tmp_path / "weights-0.npz")
    wait(worker(tmp_path, 3, None))  # the same command, restarted, asked for 3 epochs
    assert json.loads((tmp_path / "epochs-0.json").read_text()) == 1  # only the missing epoch ran
    resumed = weights(tmp_path / "weights-0.npz")
    assert any(np.abs(a - b).max() > 100 * TOLERANCE for a, b in zip(first, resumed, strict=True))
