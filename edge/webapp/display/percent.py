"""Probabilities as people read them: a percentage with one decimal that never claims certainty.

Screening is never certain: a probability that would round to 100.0% is shown as "> 99.9%",
and one that would round to 0.0% as "< 0.1%". The database, the CSV and the API keep the number.
"""

from __future__ import annotations

from flask import Flask


def percent(probability: float) -> str:
    """The number before the % sign: 0.8713 -> '87.1'; 0.99996 -> '> 99.9'; 0.00001 -> '< 0.1'."""
    shown = f"{probability * 100:.1f}"
    if shown == "100.0":
        return "> 99.9"
    if shown in ("0.0", "-0.0"):
        return "< 0.1"
    return shown


def init_app(app: Flask) -> None:
    app.add_template_filter(percent, "percent")
