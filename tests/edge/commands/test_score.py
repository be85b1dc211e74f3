"""`python -m edge score`: files and folders in, one CSV row per file out, never a crash."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.__main__ import main
from edge.bundle import MODEL_FILE
from edge.commands.score import COLUMNS
from lab.synthetic import encode, synthetic_xray
from tests.tiny_bundle import dicom_bytes

REPO = Path(__file__).resolve().parents[3]


def rows_of(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames) == COLUMNS
    return list(reader)


@pytest.fixture
def clinic_folder(tmp_path: Path, xray_file) -> Path:
    """A folder tree: two X-rays (one nested), a broken JPEG, a blank PNG and a text file to skip."""
    xray_file("clinic/a.jpeg", seed=21)
    xray_file("clinic/day2/b.png", seed=22, width=500, height=600)
    (tmp_path / "clinic/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not the rest of a JPEG")
    (tmp_path / "clinic/blank.png").write_bytes(encode(np.full((400, 400), 7, dtype=np.uint8), "PNG"))
    (tmp_path / "clinic/readme.txt").write_text("not an image")
    return tmp_path / "clinic"


def test_folder_is_scored_recursively_to_stdout(clinic_folder, tiny_bundle_int8, capsys):
    assert main(["score", "--model", str(tiny_bundle_int8.root), str(clinic_folder)]) == 0
    captured = capsys.readouterr()
    rows = {Path(row["path"]).name: row for row in rows_of(captured.out)}
    assert sorted(rows) == ["a.jpeg", "b.png", "blank.png", "broken.jpg"]
    for name in ("a.jpeg", "b.png"):
        assert rows[name]["status"] == "ok"
        assert rows[name]["label"] in ("NORMAL", "PNEUMONIA")
        assert 0.0 <= float(rows[name]["probability"]) <= 1.0
    assert rows["broken.jpg"]["status"] == "rejected"
    assert rows["broken.jpg"]["detail"].startswith("corrupt:")
    assert rows["blank.png"]["status"] == "rejected"
    assert rows["blank.png"]["detail"].startswith("cannot assess: the image is blank")
    assert {row["model_sha256"] for row in rows.values()} == {tiny_bundle_int8.model_sha256}
    assert {row["threshold"] for row in rows.values()} == {"0.5000"}
    assert {row["calibration"] for row in rows.values()} == {tiny_bundle_int8.calibration.description}
    assert "scored 4 files (2 rejected)" in captured.err
    assert "not a diagnosis" in captured.err


def test_folders_give_every_dicom_the_kiosk_accepts_a_row(tmp_path, tiny_bundle_int8, capsys):
    """*.dicom, *.DCM, a DICOM named after its UID, one without its 128-byte preamble: all scored,
    as the kiosk would; what is not an X-ray by name or content is skipped, and said so."""
    film = dicom_bytes(synthetic_xray(seed=31, width=400, height=480).astype(np.uint16) * 16)
    folder = tmp_path / "pacs"
    folder.mkdir()
    for name, data in {
        "a.dicom": film,
        "b.DCM": film,
        "1.2.840.113619.2.55.3.604688119": film,
        "no-preamble.dcm": film[128:],
        "notes.txt": b"not an image",
        "1.2.3.txt": b"not an image either",
    }.items():
        (folder / name).write_bytes(data)
    assert main(["score", "--model", str(tiny_bundle_int8.root), str(folder)]) == 0
    captured = capsys.readouterr()
    rows = {Path(row["path"]).name: row for row in rows_of(captured.out)}
    assert sorted(rows) == ["1.2.840.113619.2.55.3.604688119", "a.dicom", "b.DCM", "no-preamble.dcm"]
    # The same film, however named: one verdict, decoded every time (never refused as unreadable).
    (verdict,) = {(row["status"], row["label"], row["probability"], row["detail"]) for row in rows.values()}
    assert not verdict[3].startswith(("corrupt", "not_an_image", "unsupported")), verdict
    assert "skipped 2 files in the folders that are not JPEG, PNG or DICOM" in captured.err


def test_named_files_are_scored_whatever_their_suffix(tmp_path, tiny_bundle_int8, capsys):
    odd = tmp_path / "export.bin"
    odd.write_bytes(b"hello")
    assert main(["score", "--model", str(tiny_bundle_int8.root), str(odd)]) == 0
    (row,) = rows_of(capsys.readouterr().out)
    assert (row["status"], row["label"], row["probability"]) == ("rejected", "", "")
    assert row["detail"].startswith("not_an_image:")


def test_csv_file_is_written_whole(clinic_folder, tiny_bundle_float, tmp_path, capsys):
    out = tmp_path / "results.csv"
    args = ["score", "--model", str(tiny_bundle_float.root), "--out", str(out), str(clinic_folder)]
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    assert len(rows_of(out.read_text())) == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".results")] == []


def test_tampered_bundle_exits_non_zero_with_a_fix(tmp_path, tiny_bundle_int8, xray_file, capsys):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle_int8.root, bundle)
    (bundle / MODEL_FILE).write_bytes(b"swapped")
    assert main(["score", "--model", str(bundle), str(xray_file())]) == 1
    err = capsys.readouterr().err
    assert "altered or replaced" in err
    assert "fix: point --model at a verified bundle folder" in err


def test_missing_bundle_exits_non_zero(tmp_path, xray_file, capsys):
    assert main(["score", "--model", str(tmp_path / "nowhere"), str(xray_file())]) == 1
    assert "not a model bundle" in capsys.readouterr().err


def test_missing_input_path_exits_2(tmp_path, tiny_bundle_int8, capsys):
    assert main(["score", "--model", str(tiny_bundle_int8.root), str(tmp_path / "gone.jpeg")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_csv_folder_must_exist(tmp_path, tiny_bundle_int8, xray_file, capsys):
    args = ["score", "--model", str(tiny_bundle_int8.root), "--csv", str(tmp_path / "no/dir.csv")]
    assert main([*args, str(xray_file())]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_python_dash_m_edge_score_runs(tiny_bundle_int8, xray_file):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "edge", "score", "--model", str(tiny_bundle_int8.root), str(xray_file())],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert rows_of(done.stdout)[0]["status"] == "ok"


def test_help_shows_defaults_and_intended_use(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["score", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "mobilenetv2-int8" in out
    assert "not a diagnosis" in out


def test_num_threads_must_be_positive(xray_file, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["score", "--num-threads", "0", str(xray_file())])
    assert exited.value.code == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err
