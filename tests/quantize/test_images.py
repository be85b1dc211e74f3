"""Image lists: the run's split, the held-out list, Kermany folders, and decoding with verification."""

from __future__ import annotations

import pytest

from lab.run_dir import read_run_dir, read_split
from lab.synthetic import xray_bytes
from quantize.images import LabelledFile, decode, read_file_list, scan_folder, write_file_list


def test_file_list_round_trips(tmp_path):
    files = [
        LabelledFile("train/NORMAL/a.jpeg", 0, "ab" * 32),
        LabelledFile("train/PNEUMONIA/b.jpeg", 1, "cd" * 32),
    ]
    write_file_list(tmp_path / "list.csv", files)
    assert read_file_list(tmp_path / "list.csv") == files
    assert (tmp_path / "list.csv").read_text().splitlines()[0] == "sha256,label,path"


def test_a_list_with_other_columns_is_refused(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\na.jpeg,NORMAL\n")
    with pytest.raises(ValueError, match="must have the columns sha256,label,path"):
        read_file_list(tmp_path / "list.csv")


def test_an_unknown_label_names_the_line(tmp_path):
    (tmp_path / "split.csv").write_text("subset,label,patient,sha256,path\ntrain,COVID,p1,00,a.jpeg\n")
    with pytest.raises(ValueError, match=r"split.csv:2: label 'COVID' is not one of"):
        read_split(tmp_path / "split.csv")


def test_scan_folder_lists_a_kermany_split_relative_to_its_parent(tmp_path):
    for label, name in (("NORMAL", "IM-0001-0001.jpeg"), ("PNEUMONIA", "person1_bacteria_1.jpeg")):
        (tmp_path / "test" / label).mkdir(parents=True)
        (tmp_path / "test" / label / name).write_bytes(xray_bytes(seed=len(name), width=80, height=90))
    root, files = scan_folder(tmp_path / "test")
    assert root == tmp_path.resolve()
    assert [(f.path, f.label) for f in files] == [
        ("test/NORMAL/IM-0001-0001.jpeg", 0),
        ("test/PNEUMONIA/person1_bacteria_1.jpeg", 1),
    ]
    decoded = decode(root, files, 32)
    assert decoded.images.shape == (2, 32, 32, 1)
    assert decoded.labels.tolist() == [0, 1]


def test_decode_refuses_a_missing_or_undecodable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.jpeg"):
        decode(tmp_path, [LabelledFile("missing.jpeg", 0, "00")], 32, verify=False)
    (tmp_path / "bad.jpeg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.jpeg cannot be decoded"):
        decode(tmp_path, [LabelledFile("bad.jpeg", 0, "00")], 32, verify=False)


def test_an_unfinished_run_directory_says_what_is_missing(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"run.json, split.csv missing"):
        read_run_dir(tmp_path)
