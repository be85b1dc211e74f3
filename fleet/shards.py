"""The pool's TFRecord shards: one `tf.train.Example` per film, written once and never rewritten.

Each example holds the film's model input (edge.preprocess.load_model_input at the pool's input size,
as a lossless PNG: the same bytes as the pool's films/ copy), its label and its content hash; who
sent it and whose it is stay in records.csv.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from lab.tf_env import tf

SHARDS_DIR = "shards"
IMAGE, LABEL, SHA = "image", "label", "content_sha256"
FEATURES = {
    IMAGE: tf.io.FixedLenFeature([], tf.string),
    LABEL: tf.io.FixedLenFeature([], tf.int64),
    SHA: tf.io.FixedLenFeature([], tf.string),
}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(pixels.shape[:2])).save(buffer, format="PNG")
    return buffer.getvalue()


def example(png_bytes: bytes, label: int, sha: str) -> bytes:
    feature = {
        IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png_bytes])),
        LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        SHA: tf.train.Feature(bytes_list=tf.train.BytesList(value=[sha.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ShardWriter:
    """Appends examples to new shards, `per_shard` films each, so a pool run holds one film at a time.

    A shard is written under a temporary name and renamed when full or closed: a crash never leaves
    half a shard under a real name (the pool's manifest, written last, lists only finished ones).
    """

    def __init__(self, pool_dir: Path, first_number: int, per_shard: int) -> None:
        self.pool_dir, self.number, self.per_shard = pool_dir, first_number, per_shard
        self.written: list[str] = []
        self._writer: tf.io.TFRecordWriter | None = None
        self._count = 0

    @property
    def current(self) -> str:
        return f"{SHARDS_DIR}/shard-{self.number:05d}.tfrecord"

    def add(self, serialized: bytes) -> str:
        """Write one example; returns the shard that holds it."""
        if self._writer is None:
            (self.pool_dir / SHARDS_DIR).mkdir(exist_ok=True)
            self._writer = tf.io.TFRecordWriter(str(self._partial()))
        self._writer.write(serialized)
        self._count += 1
        name = self.current
        if self._count == self.per_shard:
            self._finish()
        return name

    def close(self) -> list[str]:
        if self._writer is not None:
            self._finish()
        return self.written

    def _partial(self) -> Path:
        path = self.pool_dir / self.current
        return path.with_name(f".{path.name}.partial")

    def _finish(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._partial().replace(self.pool_dir / self.current)
        self.written.append(self.current)
        self._writer, self._count = None, 0
        self.number += 1


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """In-graph: the example's uint8 (s, s, 1) image, label and content hash."""
    fields = tf.io.parse_single_example(serialized, FEATURES)
    return {IMAGE: tf.io.decode_png(fields[IMAGE], channels=1), LABEL: fields[LABEL], SHA: fields[SHA]}


def read_films(paths: Iterable[Path], wanted: set[str]) -> Iterator[tuple[str, np.ndarray, int]]:
    """(content hash, uint8 image, label) of every wanted film in the shards, in shard order."""
    for path in paths:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            fields = tf.io.parse_single_example(raw, FEATURES)
            sha = fields[SHA].numpy().decode()
            if sha in wanted:
                yield sha, tf.io.decode_png(fields[IMAGE], channels=1).numpy(), int(fields[LABEL])
