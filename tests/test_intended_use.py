"""The intended-use statement is one text (edge.INTENDED_USE), never reworded elsewhere in the code."""

from __future__ import annotations

import re
from pathlib import Path

import edge

REPO = Path(__file__).resolve().parents[1]
#: The statement itself, and its translation marker (gettext needs the literal; tests/edge/webapp
#: checks that the two are identical).
ALLOWED = {REPO / "edge" / "__init__.py", REPO / "edge" / "webapp" / "display" / "i18n.py"}
#: Phrases only the statement itself may contain.
WORDING = re.compile(r"not a diagnosis|screening aid", re.IGNORECASE)


def test_only_edge_init_words_the_intended_use() -> None:
    shipped = [p for folder in ("edge", "trainer", "quantize") for p in (REPO / folder).rglob("*")]
    worded = [
        f"{path.relative_to(REPO)}:{number}"
        for path in shipped
        if path.suffix in {".py", ".html", ".js"} and path not in ALLOWED
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if WORDING.search(line)
    ]
    assert worded == []
    assert WORDING.search(edge.INTENDED_USE)
