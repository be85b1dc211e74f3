"""Bundle verification: the kiosk never loads a model nobody measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge.bundle import (
    FORMAT_VERSION,
    METADATA_FILE,
    MODEL_FILE,
    BundleError,
    load_bundle,
    write_bundle,
)
from edge.files import atomic_write_bytes
from edge.provenance import sha256_file

METADATA = {
    "name": "unit",
    "labels": ["NORMAL", "PNEUMONIA"],
    "threshold": 0.4,
    "input": {"height": 224, "width": 224, "channels": 1, "dtype": "uint8"},
    "outputs": {"probability": {"shape": [1, 1]}, "embedding": {"shape": [1, 2]}},
    "head": {"input": "embedding", "activation": "sigmoid", "kernel": [0.5, -0.25], "bias": 0.1},
}


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    write_bundle(tmp_path / "b", b"pretend flatbuffer bytes " * 40, METADATA)
    return tmp_path / "b"


def edit_metadata(root: Path, **changes: object) -> None:
    path = root / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


def test_written_bundle_loads_with_its_hash_and_fields(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.model_sha256 == sha256_file(bundle_dir / MODEL_FILE)
    assert (bundle.name, bundle.threshold, bundle.input_size) == ("unit", 0.4, 224)
    assert bundle.labels == ["NORMAL", "PNEUMONIA"]
    assert not [p.name for p in bundle_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_bundle_files_are_readable_by_the_kiosk_user(bundle_dir):
    for name in (MODEL_FILE, METADATA_FILE):
        assert (bundle_dir / name).stat().st_mode & 0o777 == 0o644


def test_other_atomic_writes_stay_private(tmp_path):
    atomic_write_bytes(tmp_path / "secret", b"x")
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secret").read_bytes() == b"x"


def test_one_changed_byte_is_refused(bundle_dir):
    model = bundle_dir / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[100] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="altered or replaced"):
        load_bundle(bundle_dir)


def test_unknown_format_version_is_refused(bundle_dir):
    edit_metadata(bundle_dir, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match=f"format_version {FORMAT_VERSION + 1}.*reads version"):
        load_bundle(bundle_dir)


def test_foreign_format_is_refused(bundle_dir):
    edit_metadata(bundle_dir, format="something-else")
    with pytest.raises(BundleError, match="not a pneumoedge-bundle"):
        load_bundle(bundle_dir)


def test_missing_model_file_is_refused(bundle_dir):
    (bundle_dir / MODEL_FILE).unlink()
    with pytest.raises(BundleError, match=r"model file .* is missing"):
        load_bundle(bundle_dir)


def test_missing_metadata_is_refused(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(tmp_path)


def test_unreadable_metadata_is_refused(bundle_dir):
    (bundle_dir / METADATA_FILE).write_text("{ not json")
    with pytest.raises(BundleError, match="cannot be read as JSON"):
        load_bundle(bundle_dir)


def test_missing_required_fields_are_all_named(bundle_dir):
    path = bundle_dir / METADATA_FILE
    metadata = json.loads(path.read_text())
    del metadata["threshold"], metadata["labels"]
    path.write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match="lacks required fields: labels, threshold"):
        load_bundle(bundle_dir)


def test_a_format_1_bundle_without_a_head_is_refused(bundle_dir):
    path = bundle_dir / METADATA_FILE
    metadata = json.loads(path.read_text())
    del metadata["head"]
    metadata["format_version"] = 1
    path.write_text(json.dumps(metadata))
    with pytest.raises(BundleError, match="format_version 1; this kiosk reads version 2"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"labels": ["PNEUMONIA", "NORMAL"]}, "labels"),
        ({"labels": ["NORMAL", "BACTERIAL", "VIRAL"]}, "labels"),
        ({"input": {**METADATA["input"], "dtype": "int16"}}, "input dtype 'int16'"),
        ({"outputs": {"probability": {"shape": [1, 1]}}}, "lack 'probability' or 'embedding'"),
        ({"threshold": 1.0}, "threshold 1.0"),
        ({"threshold": "0.5"}, "threshold '0.5'"),
        ({"input": {**METADATA["input"], "intensity": "histogram"}}, "intensity standardisation 'histogram'"),
    ],
)
def test_a_bundle_the_kiosk_cannot_run_is_refused_by_name(bundle_dir, changes, named):
    edit_metadata(bundle_dir, **changes)
    with pytest.raises(BundleError, match=f"this kiosk cannot run it: .*{re.escape(named)}"):
        load_bundle(bundle_dir)


def test_intensity_is_read_and_older_bundles_have_none(bundle_dir):
    assert load_bundle(bundle_dir).intensity == "none"
    for method in ("clahe", "equalise"):
        edit_metadata(bundle_dir, input={**METADATA["input"], "intensity": method})
        assert load_bundle(bundle_dir).intensity == method


def test_head_and_default_calibration_are_read(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.head.logits([[2.0, 4.0]]) == pytest.approx([1.0 - 1.0 + 0.1])
    assert bundle.calibration.description.startswith("uncalibrated")


def test_tiny_test_bundles_verify(tiny_bundle_int8, tiny_bundle_float):
    for bundle in (tiny_bundle_int8, tiny_bundle_float):
        assert load_bundle(bundle.root).model_sha256 == sha256_file(bundle.model_path)
        assert set(bundle.metadata["ood"]) >= {"mean", "std", "threshold", "statistic"}
