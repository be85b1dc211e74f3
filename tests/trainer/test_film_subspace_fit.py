"""Fitting the film-layout check: the limit comes from held-out patients, the file is what the kiosk loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.film_subspace import FilmSubspace
from edge.kermany import scan_split
from trainer.__main__ import main
from trainer.film_subspace_fit import split_by_patient


def test_no_patient_is_on_both_sides_of_the_split(kermany: Path):
    samples = scan_split(kermany, "train")
    fitting, held = split_by_patient(samples, 0.25, seed=3)
    assert {s.patient for s in fitting}.isdisjoint({s.patient for s in held})
    assert len(fitting) + len(held) == len(samples) and held


def test_the_command_writes_the_subspace_with_its_limit_from_held_out_films(
    kermany: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "film_subspace.npz"
    measured = kermany / "train" / "PNEUMONIA"
    main(
        [
            "film-subspace",
            "--data",
            str(kermany),
            "--out",
            str(out),
            "--components",
            "3",
            "--margin",
            "1.5",
            "--measure",
            str(measured),
        ]
    )
    fitted = FilmSubspace.load(out)
    made = fitted.provenance
    assert fitted.components.shape == (3, 1024) and made["components"] == 3
    assert fitted.limit == pytest.approx(1.5 * max(made["held_out_max"], made["suite_max"]), abs=1e-3)
    assert made["fit_films"] + made["held_out_films"] == made["films"] - 1  # the corrupt file is left out
    printed = capsys.readouterr().out
    assert f"film-layout limit {fitted.limit:.4f}" in printed
    assert "PNEUMONIA (measured only)" in printed and "refused" in printed
