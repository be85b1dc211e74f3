"""The committed tiny bundles (tests/fixtures) are exactly what tests/tiny_bundle.py builds today.

The edge and kiosk tests load those files without TensorFlow; this check, in the training
environment, keeps them honest: the TFLite converter is deterministic (same bytes on every build with
the pinned TensorFlow), so any drift in the recipe, the converter or the exporter's ood section shows
up here. Rebuild them after a deliberate change with `python -m tests.tiny_bundle --write`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tiny_bundle

pytestmark = pytest.mark.slow  # rebuilds the tiny bundles with the TFLite converter: 45 s on 2 loaded cores

pytest.importorskip("tensorflow", reason="rebuilding the tiny bundles needs the training environment")


def test_rebuilt_fixtures_are_byte_identical(tmp_path: Path) -> None:
    tiny_bundle.write_fixtures(tmp_path)
    committed = sorted(p.relative_to(tiny_bundle.FIXTURES) for p in tiny_bundle.FIXTURES.rglob("tiny-*/*"))
    rebuilt = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert rebuilt == committed
    changed = [
        str(p) for p in rebuilt if (tmp_path / p).read_bytes() != (tiny_bundle.FIXTURES / p).read_bytes()
    ]
    assert not changed, f"{changed} differ from a fresh build: run python -m tests.tiny_bundle --write"
