"""Golden answers: the shipped default bundle on committed synthetic films, under this platform's
architecture and runtime (the kiosk's ai-edge-litert, the 32-bit Pi's tflite-runtime, or the training
environment's; x86-64 here, aarch64 under emulation in `make test-aarch64`).

The expectations are regenerated on purpose only: `python -m benchmarks.golden --write`.
"""

from __future__ import annotations

import copy
import json

import pytest

from benchmarks.golden import EXPECTED, STALE, answers, for_platform, mismatches, platform_key
from edge.bundle import load_bundle
from edge.screener import default_model_dir

SHIPPED = default_model_dir()
pytestmark = pytest.mark.skipif(
    not (SHIPPED / "bundle.json").is_file(), reason=f"no shipped bundle at {SHIPPED}"
)


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(EXPECTED.read_text())


@pytest.fixture(scope="module")
def got() -> dict:
    return answers(SHIPPED)


@pytest.fixture(scope="module")
def expected(document, got) -> dict:
    mine = for_platform(document, got["_runtime"])
    assert mine is not None, f"no golden answers for {platform_key(got['_runtime'])}: {STALE} on it"
    return mine


def test_expectations_are_for_the_shipped_bundle(document):
    assert document["model_sha256"] == load_bundle(SHIPPED).model_sha256, STALE


def test_shipped_bundle_gives_the_golden_answers(expected, got):
    assert mismatches(expected, got) == []


def test_the_golden_set_covers_both_verdicts(expected):
    assert {film["status"] for film in expected["films"].values()} == {"ok", "rejected"}


def test_another_platform_answers_are_not_used_here(document, got):
    other = {
        **document,
        "platforms": {"riscv64 some-runtime": document["platforms"][platform_key(got["_runtime"])]},
    }
    assert for_platform(other, got["_runtime"]) is None


def test_a_moved_probability_or_a_changed_label_is_caught(expected, got):
    moved = copy.deepcopy(got)
    name = next(n for n, film in expected["films"].items() if film["status"] == "ok")
    moved[name]["probability"] += 1.5 * expected["tolerance"]["probability"]
    moved[name]["label"] = "PNEUMONIA"
    problems = mismatches(expected, moved)
    assert len(problems) == 2
    assert all(p.startswith(f"{name}: ") for p in problems)
