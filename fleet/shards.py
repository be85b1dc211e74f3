"""The pool's TFRecord shards: one `tf.train.Example` per film, written once and never rewritten.

Each example holds the film's model input (edge.preprocess.load_model_input at the pool's input size,
as a lossless PNG), its label and its content hash; who sent it and whose it is stay in records.csv.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.tf_env import tf

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


def example(model_input: np.ndarray, label: int, sha: str) -> bytes:
    feature = {
        IMAGE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png(model_input)])),
        LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        SHA: tf.train.Feature(bytes_list=tf.train.BytesList(value=[sha.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shard(path: Path, examples: Iterable[bytes]) -> None:
    """Write to a temporary name and rename: a crash never leaves a half shard under a real name."""
    tmp = path.with_name(f".{path.name}.partial")
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for serialized in examples:
            writer.write(serialized)
    tmp.replace(path)


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
