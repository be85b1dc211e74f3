"""Case references: the clinic's own register number for a film, and never a patient identifier.

A case reference flows into the history, the CSV, the report and the API, so what a person types
there must not be a name or a date of birth. The checks, in order, each with a plain message
saying what to type instead: at most 64 characters; nothing that looks like a date or a name;
letters, digits, space and `. _ - /` only; and the clinic's own pattern for its register numbers
(the `CASE_REF_PATTERN` setting, with `CASE_REF_EXAMPLE` shown to the user; defaults in
edge/kiosk_settings.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Flask, current_app

CASE_REF_MAX = 64
RULES_KEY = "pneumoedge.case_ref_rules"

_CHARACTERS = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]*")
_MONTHS = r"(?:JAN|FEB|MAR|APR|MAY|JUNE?|JULY?|AUG|SEPT?|OCT|NOV|DEC)[A-Z]*"
_DAY, _MONTH, _SEP = r"(?:0?[1-9]|[12][0-9]|3[01])", r"(?:0?[1-9]|1[0-2])", r"[-/. ]"
_DATE = re.compile(
    rf"(?<![0-9])(?:19|20)[0-9]{{2}}{_SEP}{_MONTH}{_SEP}{_DAY}(?![0-9])"  # 2019-05-04
    rf"|(?<![0-9]){_DAY}{_SEP}{_MONTH}{_SEP}(?:19|20)?[0-9]{{2}}(?![0-9])"  # 04/05/2019, 4.5.19
    rf"|(?<![0-9])[0-9]{{1,2}} ?{_MONTHS} ?[0-9]{{2,4}}(?![0-9])"  # 4 MAY 2019
    rf"|(?<![A-Z]){_MONTHS} ?[0-9]{{1,2}},? [0-9]{{4}}(?![0-9])"  # MAY 4, 2019
    r"|\b(?:D\.?O\.?B|BORN|BIRTH|BIRTHDAY|AGED?)\b",
    re.IGNORECASE,
)
#: Two words of letters only, side by side with a space (JANE DOE); registers join parts with - or /.
_NAME = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2,} +[A-Za-z]{2,}(?![A-Za-z0-9])")


class CaseRefError(ValueError):
    """A case reference refused; the message says what to type instead."""


@dataclass(frozen=True)
class CaseRefRules:
    """The clinic's register-number pattern (matched in full) and an example of one."""

    pattern: re.Pattern[str]
    example: str

    def check(self, raw: str) -> str | None:
        """The stripped reference, None when blank; CaseRefError when it breaks a rule."""
        value = raw.strip()
        if not value:
            return None
        if len(value) > CASE_REF_MAX:
            raise CaseRefError(f"The case reference is {len(value)} characters long; use {self._rule()}.")
        if _DATE.search(value):
            raise CaseRefError(
                "The case reference looks like a date of birth. Type only the clinic's register number, "
                f"like {self.example}."
            )
        if _NAME.search(value):
            raise CaseRefError(
                "The case reference looks like a person's name. Type only the clinic's register number, "
                f"like {self.example}."
            )
        if not _CHARACTERS.fullmatch(value):
            raise CaseRefError(
                f"The case reference has characters that are not allowed; use {self._rule()}. "
                "Never enter a patient's name."
            )
        if not self.pattern.fullmatch(value):
            raise CaseRefError(
                "The case reference is not one of this clinic's register numbers; type it like "
                f"{self.example}."
            )
        return value

    def _rule(self) -> str:
        return (
            f"letters A-Z, digits, space and . _ - / (at most {CASE_REF_MAX} characters), like {self.example}"
        )


def init_case_refs(app: Flask) -> None:
    """Compile the clinic's pattern once; a broken one stops the start with a message saying so."""
    source = app.config["CASE_REF_PATTERN"]
    try:
        pattern = re.compile(source)
    except re.error as e:
        raise ValueError(f"CASE_REF_PATTERN {source!r} is not a valid regular expression ({e})") from e
    example = app.config["CASE_REF_EXAMPLE"]
    rules = CaseRefRules(pattern, example)
    try:
        rules.check(example)
    except CaseRefError as e:
        raise ValueError(f"CASE_REF_EXAMPLE {example!r} is refused by the case-reference rules: {e}") from e
    app.extensions[RULES_KEY] = rules


def rules() -> CaseRefRules:
    return current_app.extensions[RULES_KEY]
