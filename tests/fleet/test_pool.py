"""Pooling kiosk exports: verified, deduplicated across sites, patients kept whole, incremental."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fleet import pool as pooling
from fleet.__main__ import main
from fleet.records import STATUS_CONFLICT, group_split, patient_groups, read_records, trainable
from fleet.trust import TrustedKiosks

from .conftest import Film, make_export, provisioned, site_films

SIZE = 32
POOL_CLI = ["pool", "--input-size", str(SIZE)]


def trust_option(trusted: TrustedKiosks) -> list[str]:
    return ["--trusted-kiosks", str(trusted.path)]


def rewrite(source: Path, out: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of an export zip with members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(out, "w") as new:
        for name in dict.fromkeys([*old.namelist(), *change]):
            data = change[name] if name in change else old.read(name)
            if data is not None:
                new.writestr(name, data)
    return out


def first_png(path: Path) -> str:
    return next(n for n in zipfile.ZipFile(path).namelist() if n.endswith(".png"))


@pytest.fixture
def two_sites(tmp_path: Path) -> tuple[Path, Path]:
    shared = Film(999, "REG-A-SHARED", "PNEUMONIA")  # one film sent by both sites (a referral)
    a = make_export(tmp_path / "kiosk-a", [*site_films(1, 6, 0), shared], tmp_path / "a.zip")
    b_films = [*site_films(2, 6, 100), Film(999, "REG-B-77", "PNEUMONIA")]
    b = make_export(tmp_path / "kiosk-b", b_films, tmp_path / "b.zip")
    return a, b


@pytest.fixture
def trusted(two_sites: tuple[Path, Path], tmp_path: Path) -> TrustedKiosks:
    """The programme's trust file for both kiosks of `two_sites`."""
    return provisioned(tmp_path / "trusted.json", tmp_path / "kiosk-a", tmp_path / "kiosk-b")


def test_duplicates_across_sites_are_kept_once_and_link_the_patients(
    two_sites: tuple[Path, Path], tmp_path: Path, trusted: TrustedKiosks
) -> None:
    state = pooling.pool(list(two_sites), tmp_path / "pool", SIZE, trusted=trusted)
    records = read_records(tmp_path / "pool")
    assert state["films"] == {"ok": len(records), "conflicting": 0, "sites": 2}
    assert [e["counts"]["duplicates"] for e in state["exports"]] == [0, 1]
    assert len(records) == 9 + 1 + 9  # 6 children with 9 films per site, the shared film once
    shared = [r for r in records if len(r.patients) == 2]
    assert len(shared) == 1 and {p.split(":")[0] for p in shared[0].patients} == {r.site for r in records}
    for name in state["shards"]:
        assert (tmp_path / "pool" / name).stat().st_size > 0
    text = (tmp_path / "pool" / "records.csv").read_text()
    assert "REG-" not in text  # only keyed hashes leave the kiosks


def test_no_patient_is_on_both_sides_of_any_split(
    two_sites: tuple[Path, Path], tmp_path: Path, trusted: TrustedKiosks
) -> None:
    pooling.pool(list(two_sites), tmp_path / "pool", SIZE, trusted=trusted)
    records = trainable(read_records(tmp_path / "pool"))
    assert len(set(patient_groups(records).values())) < len(records)  # children with two films exist
    for seed in range(10):
        train, val = group_split(records, 0.3, seed)
        assert train and val and len(train) + len(val) == len(records)
        train_keys = {k for r in train for k in r.patients}
        assert not train_keys & {k for r in val for k in r.patients}


def test_a_film_confirmed_differently_at_two_sites_is_not_trained_on(tmp_path: Path) -> None:
    a = make_export(
        tmp_path / "ka", [Film(5, "R1", "PNEUMONIA"), Film(6, "R2", "NORMAL")], tmp_path / "a.zip"
    )
    b = make_export(tmp_path / "kb", [Film(5, "R9", "NORMAL")], tmp_path / "b.zip")
    trusted = provisioned(tmp_path / "trusted.json", tmp_path / "ka", tmp_path / "kb")
    pooling.pool([a, b], tmp_path / "pool", SIZE, trusted=trusted)
    records = read_records(tmp_path / "pool")
    assert [r.status for r in records].count(STATUS_CONFLICT) == 1
    assert len(trainable(records)) == 1
    (conflicting,) = [r for r in records if r.status == STATUS_CONFLICT]
    assert not (tmp_path / "pool" / conflicting.film_path).exists()  # out of the Kermany view too


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("altered", "does not match its manifest.csv checksum"),
        ("missing", "missing (a partial export)"),
        ("extra", "is not listed in manifest.csv"),
        ("truncated", "not a complete zip archive"),
        ("no-keys", "without pseudonymous patient keys"),
    ],
)
def test_a_damaged_or_partial_export_is_refused_and_nothing_is_pooled(
    two_sites: tuple[Path, Path], tmp_path: Path, trusted: TrustedKiosks, damage: str, message: str
) -> None:
    good, other = two_sites
    bad = tmp_path / "bad.zip"
    member = first_png(good)
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[:-200])
    else:
        changes: dict[str, dict[str, bytes | None]] = {
            "altered": {member: zipfile.ZipFile(other).read(first_png(other))},
            "missing": {member: None},
            "extra": {"NORMAL/" + "f" * 64 + ".png": b"not listed"},
            "no-keys": {"export.json": None},
        }
        rewrite(good, bad, changes[damage])
    with pytest.raises(pooling.ExportError, match=re.escape(message)):
        pooling.pool([other, bad], tmp_path / "pool", SIZE, trusted=trusted)
    assert not (tmp_path / "pool").exists()  # `other` was not pooled either: nothing was written
    with pytest.raises(SystemExit, match=r"refused|not a complete|without pseudonymous"):
        main([*POOL_CLI, str(other), str(bad), "--out", str(tmp_path / "pool"), *trust_option(trusted)])


def test_rerun_with_one_more_export_adds_only_its_films(
    two_sites: tuple[Path, Path], tmp_path: Path, trusted: TrustedKiosks
) -> None:
    a, b = two_sites
    out = tmp_path / "pool"
    first = pooling.pool([a], out, SIZE, shard_films=4, trusted=trusted)
    shards_before = {name: (out / name).read_bytes() for name in first["shards"]}
    records_before = read_records(out)

    second = pooling.pool([a, b], out, SIZE, shard_films=4, trusted=trusted)
    assert {name: (out / name).read_bytes() for name in first["shards"]} == shards_before  # untouched
    new_shards = second["shards"][len(first["shards"]) :]
    assert new_shards and second["shards"][: len(first["shards"])] == first["shards"]
    records = read_records(out)
    added = records[len(records_before) :]
    assert [r.export for r in added] == [second["exports"][1]["sha256"]] * 9
    assert {r.shard for r in added} == set(new_shards)

    third = pooling.pool([a, b], out, SIZE, shard_films=4, trusted=trusted)  # nothing new: nothing written
    assert third["shards"] == second["shards"] and len(read_records(out)) == len(records)
    assert json.loads((out / "pool.json").read_text())["exports"] == second["exports"]


def test_a_pool_of_another_input_size_is_refused(
    two_sites: tuple[Path, Path], tmp_path: Path, trusted: TrustedKiosks
) -> None:
    pooling.pool([two_sites[0]], tmp_path / "pool", SIZE, trusted=trusted)
    with pytest.raises(pooling.ExportError, match="32 px"):
        pooling.pool([two_sites[1]], tmp_path / "pool", 64, trusted=trusted)


def test_the_shards_hold_the_model_input_label_and_hash(
    two_sites: tuple[Path, Path], tmp_path: Path, trusted: TrustedKiosks
) -> None:
    from fleet.shards import read_films

    state = pooling.pool([two_sites[0]], tmp_path / "pool", SIZE, trusted=trusted)
    records = {r.content_sha256: r for r in read_records(tmp_path / "pool")}
    films = list(read_films([tmp_path / "pool" / s for s in state["shards"]], set(records)))
    assert sorted(sha for sha, _, _ in films) == sorted(records)
    for sha, image, label in films:
        assert image.shape == (SIZE, SIZE, 1) and label == records[sha].label
        copy = tmp_path / "pool" / records[sha].film_path  # the Kermany view: the same pixels
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == records[sha].file_sha256
        np.testing.assert_array_equal(np.asarray(Image.open(copy))[..., None], image)
