"""The Kermany layout: patient ids, scanning, duplicates, manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.kermany import LABELS, drop_duplicates, manifest_sha256, patient_id, scan_split


@pytest.mark.parametrize(
    ("filename", "patient"),
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1_virus_7.jpeg", "person1"),
        ("PERSON22_bacteria_3.jpeg", "PERSON22"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-0383-0001.jpeg", "NORMAL2-IM-0383"),
        ("clinic_export_17.png", "clinic_export_17"),
    ],
)
def test_patient_id(filename, patient):
    assert patient_id(filename) == patient


def make_layout(root: Path) -> None:
    files = {
        "train/NORMAL/IM-0001-0001.jpeg": b"a",
        "train/NORMAL/IM-0001-0002.jpeg": b"b",
        "train/NORMAL/notes.txt": b"ignored",
        "train/PNEUMONIA/person3_virus_1.jpeg": b"c",
        "train/PNEUMONIA/person3_virus_2.JPG": b"a",  # same bytes as a NORMAL file
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_scan_split_reads_images_sorted_with_labels(tmp_path):
    make_layout(tmp_path)
    samples = scan_split(tmp_path, "train")
    assert [(s.path.name, LABELS[s.label], s.patient) for s in samples] == [
        ("IM-0001-0001.jpeg", "NORMAL", "IM-0001"),
        ("IM-0001-0002.jpeg", "NORMAL", "IM-0001"),
        ("person3_virus_1.jpeg", "PNEUMONIA", "person3"),
        ("person3_virus_2.JPG", "PNEUMONIA", "person3"),
    ]


def test_byte_identical_files_are_dropped_after_the_first(tmp_path):
    make_layout(tmp_path)
    kept, dropped = drop_duplicates(scan_split(tmp_path, "train"))
    assert [s.path.name for s in dropped] == ["person3_virus_2.JPG"]
    assert len(kept) == 3


def test_manifest_is_order_independent_and_label_sensitive(tmp_path):
    make_layout(tmp_path)
    samples = scan_split(tmp_path, "train")
    assert manifest_sha256(samples) == manifest_sha256(reversed(samples))
    relabelled = [type(s)(s.path, 1 - s.label, s.patient, s.sha256) for s in samples]
    assert manifest_sha256(relabelled) != manifest_sha256(samples)


def test_missing_split_or_class_folder_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="Kermany layout"):
        scan_split(tmp_path, "train")
    (tmp_path / "train" / "NORMAL").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="PNEUMONIA is missing"):
        scan_split(tmp_path, "train")
