"""The intended-use statement is one text (edge.INTENDED_USE): never reworded in code, quoted by the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import edge

REPO = Path(__file__).resolve().parents[1]
#: The statement itself, and its translation marker (gettext needs the literal; tests/edge/webapp
#: checks that the two are identical).
ALLOWED = {REPO / "edge" / "__init__.py", REPO / "edge" / "webapp" / "display" / "i18n.py"}
#: Phrases only the statement itself may contain.
WORDING = re.compile(r"not a diagnosis|screening aid", re.IGNORECASE)
#: Every package and script folder that ships or prints results.
CODE = ("edge", "lab", "trainer", "quantize", "fleet", "benchmarks", "firmware_scripts", "tools")
#: The documents a user reads first: each quotes the statement word for word.
DOCUMENTS = [
    "README.md",
    "models/MODEL_CARD.md",
    "firmware_scripts/README.md",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")),
]


def test_only_edge_init_words_the_intended_use() -> None:
    shipped = [p for folder in CODE for p in (REPO / folder).rglob("*")]
    worded = [
        f"{path.relative_to(REPO)}:{number}"
        for path in shipped
        if path.suffix in {".py", ".html", ".js", ".sh"} and path not in ALLOWED
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if WORDING.search(line)
    ]
    assert worded == []
    assert WORDING.search(edge.INTENDED_USE)


def test_the_statement_names_the_limits_that_matter() -> None:
    for limit in ("frontal", "children aged 1 to 5", "one hospital", "reviewed by a clinician"):
        assert limit in edge.INTENDED_USE


@pytest.mark.parametrize("document", DOCUMENTS)
def test_each_document_quotes_the_statement(document: str) -> None:
    assert f"> **Intended use.** {edge.INTENDED_USE}" in (REPO / document).read_text(encoding="utf-8")
