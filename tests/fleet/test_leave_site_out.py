"""Leave-site-out folds on a synthetic three-site pool: each site held out once, patients whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet import pool as pooling
from fleet.__main__ import main
from fleet.leave_site_out import site_folds, summarise
from fleet.records import patient_groups, read_records, trainable

from .conftest import Film, make_export, provisioned, site_films


@pytest.fixture
def three_sites(tmp_path: Path) -> Path:
    shared = Film(999, "REG-SHARED", "PNEUMONIA")  # one child's film reached sites 1 and 3
    referred = [Film(999, "R3", "PNEUMONIA"), Film(997, "R3", "PNEUMONIA")]  # that child, seen again
    exports = [
        make_export(tmp_path / "k1", [*site_films(1, 4, 0), shared], tmp_path / "1.zip"),
        make_export(tmp_path / "k2", site_films(2, 4, 100), tmp_path / "2.zip"),
        make_export(tmp_path / "k3", [*site_films(3, 4, 200), *referred], tmp_path / "3.zip"),
    ]
    trusted = provisioned(tmp_path / "trusted.json", *(tmp_path / k for k in ("k1", "k2", "k3")))
    pooling.pool(exports, tmp_path / "pool", 32, trusted=trusted)
    return tmp_path / "pool"


def test_every_site_is_held_out_once_and_no_patient_crosses(three_sites: Path) -> None:
    records = trainable(read_records(three_sites))
    folds = site_folds(records)
    assert sorted(f.site for f in folds) == sorted({r.site for r in records})
    groups = patient_groups(records)
    for fold in folds:
        assert {r.site for r in fold.test} == {fold.site}
        assert fold.site not in {r.site for r in fold.train}
        assert not {groups[r.content_sha256] for r in fold.train} & {
            groups[r.content_sha256] for r in fold.test
        }
    shared = next(r for r in records if len(r.patients) == 2)  # kept once, for the site that sent it first
    second_site = next(p.split(":")[0] for p in shared.patients if not p.startswith(shared.site))
    by_site = {f.site: f for f in folds}
    assert shared in by_site[shared.site].test
    assert shared not in by_site[second_site].train  # that child has another film at the second site
    assert all(shared in f.train for s, f in by_site.items() if s not in (shared.site, second_site))


def test_the_worst_site_is_reported() -> None:
    results = {"a": {"auc": {"value": 0.97}}, "b": {"auc": {"value": 0.91}}, "c": {"auc": {"value": 0.95}}}
    assert summarise(results)["worst_site"] == "b"


def test_a_one_site_pool_is_refused(tmp_path: Path) -> None:
    export = make_export(tmp_path / "k", site_films(1, 4, 0), tmp_path / "1.zip")
    pooling.pool(
        [export], tmp_path / "pool", 32, trusted=provisioned(tmp_path / "trusted.json", tmp_path / "k")
    )
    with pytest.raises(ValueError, match="at least two sites"):
        site_folds(read_records(tmp_path / "pool"))
    with pytest.raises(SystemExit, match="at least two sites"):
        main(["leave-site-out", "--pool", str(tmp_path / "pool"), "--out", str(tmp_path / "folds")])
