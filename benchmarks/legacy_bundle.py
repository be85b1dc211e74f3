"""Re-wrap a format-1 bundle (PneumoEdge v0.1) as format 2, so today's evaluations can measure it.

Format 1 had no `head` section: the probability came from the TFLite graph. The head's weights are
in the graph as constants (the Dense kernel (1, d) and bias (1,)); this reads them out, dequantised
for an int8 model, and writes a format-2 copy with the same model file and threshold. Only for the
ablation baseline in docs/training.md: the v0.1 bundles live in git history (tag or commit before
the v0.2 recipe), e.g.

    git show 8a0aad8:models/mobilenetv2-float32/bundle.json > /tmp/v01/bundle.json
    git show 8a0aad8:models/mobilenetv2-float32/model.tflite > /tmp/v01/model.tflite
    python benchmarks/legacy_bundle.py /tmp/v01 /tmp/v01-v2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge.bundle import write_bundle
from edge.calibration import Head
from edge.runtime import load_interpreter_class


def read_head(model_path: Path, embedding_size: int) -> Head:
    """The Dense kernel (1, d) and bias (1,) constants of a v0.1 model, as float64."""
    interpreter_class, _ = load_interpreter_class()
    interpreter = interpreter_class(model_path=str(model_path))
    kernels, biases = [], []
    for detail in interpreter.get_tensor_details():
        shape = tuple(int(d) for d in detail["shape"])
        if shape not in ((1, embedding_size), (1,)) or not detail["name"].startswith("arith.constant"):
            continue
        scale = detail["quantization"][0] or 1.0
        values = interpreter.get_tensor(detail["index"]).astype(np.float64) * scale
        (kernels if shape == (1, embedding_size) else biases).append(values.reshape(-1))
    if not kernels or not biases:
        raise ValueError(f"{model_path}: no Dense kernel (1, {embedding_size}) and bias (1,) constants found")
    return Head(kernels[0], float(biases[0][0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a format-1 bundle folder")
    parser.add_argument("out", type=Path, help="where to write the format-2 copy")
    args = parser.parse_args(argv)
    metadata = json.loads((args.source / "bundle.json").read_text(encoding="utf-8"))
    embedding_size = int(metadata["outputs"]["embedding"]["shape"][-1])
    head = read_head(args.source / metadata["model_file"], embedding_size)
    kept = {k: v for k, v in metadata.items() if k not in ("format", "format_version", "model_sha256")}
    kept["head"] = head.to_metadata()
    kept["name"] = args.out.name
    bundle = write_bundle(args.out, (args.source / metadata["model_file"]).read_bytes(), kept)
    print(f"wrote {bundle.root} (head of {head.kernel.size} weights, bias {head.bias:.5f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
