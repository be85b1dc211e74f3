"""A synthetic Kermany folder: small fake X-rays, patients with several films, a duplicate, a corrupt file."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.synthetic import encode, synthetic_xray

CORRUPT_NAME = "IM-0999-0001.jpeg"


def write_kermany(
    root: Path, split: str, normal: int, pneumonia: int, size: int = 128, seed: int = 0
) -> list[Path]:
    """`normal` NORMAL and `pneumonia` PNEUMONIA patients; every third patient has a second film.

    Adds one corrupt NORMAL file and, in PNEUMONIA, a byte-identical copy of the first film under
    another patient's name. `seed` varies the pictures (a test split must not repeat training
    files). Returns the written paths.
    """
    written = []
    for label, count, name in (
        ("NORMAL", normal, "IM-{p:04d}-{k:04d}.jpeg"),
        ("PNEUMONIA", pneumonia, "person{p}_bacteria_{k}.jpeg"),
    ):
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for patient in range(1, count + 1):
            for film in range(1, 3 if patient % 3 == 0 else 2):
                lesion = (0.3, 0.5) if label == "PNEUMONIA" else None
                pixels = synthetic_xray(
                    seed=seed + patient * 10 + film + 1000 * (label == "NORMAL"),
                    width=size,
                    height=size,
                    lesion=lesion,
                )
                path = folder / name.format(p=patient, k=film)
                path.write_bytes(encode(pixels, "JPEG", quality=90))
                written.append(path)
    corrupt = root / split / "NORMAL" / CORRUPT_NAME
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not a finished JPEG")
    duplicate = root / split / "PNEUMONIA" / "person999_virus_1.jpeg"
    duplicate.write_bytes((root / split / "PNEUMONIA" / "person1_bacteria_1.jpeg").read_bytes())
    return [*written, corrupt, duplicate]


@pytest.fixture
def kermany(tmp_path: Path) -> Path:
    """tmp_path/data/train with 8 NORMAL and 8 PNEUMONIA patients (plus corrupt file and duplicate)."""
    root = tmp_path / "data"
    write_kermany(root, "train", normal=8, pneumonia=8, size=64)
    return root
