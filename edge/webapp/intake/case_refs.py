"""Case references: the clinic's own register number for a film, and never a patient identifier.

A case reference flows into the history, the CSV, the report and the API, so what a person types
there must not identify the patient: no name, date of birth, phone number or ID number. The rules,
in order, each refusal in plain words saying what to type instead (the corpus in
tests/fixtures/case_refs.tsv holds what each rule accepts and refuses):

1. at most 64 characters;
2. the clinic's own pattern (`CASE_REF_PATTERN`), when it has one: a reference it matches in full
   (and of the allowed characters) is accepted as it is; the clinic knows its register numbers;
3. nothing that looks like a phone number (`+254 712 345 678`, `0712 345 678`, `(11) 91234-5678`);
4. nothing that looks like a date (ISO, day/month/year, month/day/year, 12 MAY 2019, May 4, 2019,
   compact 20190304 or 04032019), nor the words that introduce a birth or an age;
5. nothing that looks like an ID number: 8 or more digits in one number, however grouped, unless
   they are a year and a register's sequence number (`OPD-2026-00123`, `00123/2026`); a passport
   shape (`A1234567`); the words that introduce one (passport, NIN, phone, ...);
6. nothing that looks like a person's name: two words of letters side by side, however joined
   (`JANE DOE`, `JOHN-SMITH-1`, `SMITH/JOHN`, `J.SMITH`), unless one is a register word (`OPD`,
   `WARD`, `BED`, `LIT`, `CAMA`, ...);
7. letters A-Z, digits, space and `. _ - /` only;
8. without a clinic pattern, at least one digit; with one, the pattern (it did not match above).

`CASE_REF_EXAMPLE` is shown to the user in every refusal; defaults in edge/kiosk_settings.py.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass

from flask import Flask, current_app
from flask_babel import gettext

log = logging.getLogger(__name__)

CASE_REF_MAX = 64
RULES_KEY = "pneumoedge.case_ref_rules"

_CHARACTERS = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._/-]*")
_MONTHS = r"(?:JAN|FEB|MAR|APR|MAY|JUNE?|JULY?|AUG|SEPT?|OCT|NOV|DEC)[A-Z]*"
_DAY, _MONTH, _SEP = r"(?:0?[1-9]|[12][0-9]|3[01])", r"(?:0?[1-9]|1[0-2])", r"[-/. ]"
_YEAR, _YY = r"(?:19|20)[0-9]{2}", r"(?:(?:19|20)?[0-9]{2})"
_DD, _MM = r"(?:0[1-9]|[12][0-9]|3[01])", r"(?:0[1-9]|1[0-2])"
_DATE = re.compile(
    rf"(?<![0-9]){_YEAR}{_SEP}{_MONTH}{_SEP}{_DAY}(?![0-9])"  # 2019-05-04
    rf"|(?<![0-9]){_DAY}{_SEP}{_MONTH}{_SEP}{_YY}(?![0-9])"  # 04/05/2019, 4.5.19
    rf"|(?<![0-9]){_MONTH}{_SEP}{_DAY}{_SEP}{_YEAR}(?![0-9])"  # 05/14/2019 (month first)
    rf"|(?<![0-9])[0-9]{{1,2}}[-/. ]?{_MONTHS}[-/. ]?[0-9]{{2,4}}(?![0-9])"  # 4 MAY 2019, 04-May-19
    rf"|(?<![A-Z]){_MONTHS}[ .-]?[0-9]{{1,2}}(?:st|nd|rd|th)?,? ?[0-9]{{4}}(?![0-9])"  # May 4, 2019
    rf"|(?<![0-9])(?:{_YEAR}{_MM}{_DD}|{_DD}{_MM}{_YEAR})(?![0-9])",  # 20190304, 04032019
    re.IGNORECASE,
)
#: Words that introduce a birth date or an age (English, French, Portuguese).
_BIRTH_WORDS = re.compile(
    r"\b(?:D\.?O\.?B|BORN|BIRTH|BIRTHDAY|AGED?|N[EÉ]E?\s+LE|NAISSANCE|NASC|NASCID[OA]|NASCIMENTO|IDADE)\b",
    re.IGNORECASE,
)
#: Words that introduce a phone number or an ID number.
_ID_WORDS = re.compile(
    r"\b(?:TEL|T[EÉ]L[EÉ]PHONE|PHONE|MOBILE|CELL|CELULAR|TELEFONE|TELEM[OÓ]VEL|PORTABLE|"
    r"PASSPORT|PASSEPORT|PASSAPORTE|NIN|SSN|CPF|NUIT|NIDA|CNI|AADHAAR|NATIONAL|NATIONALE|NACIONAL)\b",
    re.IGNORECASE,
)
#: A number as typed: digits in groups joined by one of ` . - /`, maybe `+` or an area code in brackets.
_NUMBER = re.compile(r"\+?\s?\(?[0-9]+\)?(?:(?:\s?[ ./-]\s?|\)?\s)\(?[0-9]+\)?)*")
_PASSPORT = re.compile(r"[A-Za-z]{1,2}[0-9]{7}")
#: A register's year (a 4-digit group 19xx/20xx) may come with at most this many other digits.
_SEQUENCE_MAX = 6
#: Digits in one number from which it is a phone or ID number rather than a register's sequence.
_ID_DIGITS = 8
_WORD = re.compile(r"[^\W\d_]+")
#: Words of register numbers, never names (English, French, Portuguese, Swahili), upper case.
REGISTER_WORDS = frozenset(
    """
    OPD IPD OP IP ER ED AE AAE ANC PNC MCH CWC TB HIV ART PMTCT EPI NICU PICU ICU HDU SCBU CXR XR XRAY RAD RX
    IMG PED PEDS PAED PAEDS PEDIATRIC PAEDIATRIC PEDIATRICS PAEDIATRICS WARD BED CASE REF REG NO NR NUM NUMBER
    FILE CLINIC OUTPATIENT INPATIENT EMERGENCY CASUALTY MATERNITY MAT NURSERY BLOCK ROOM UNIT ID SITE HOSP
    HOSPITAL HC CHC PHC DISP DISPENSARY DEPT REGISTER RECORD REC SERIAL VISIT SCREEN STUDY BATCH FU NEW REVIEW
    TRIAGE KIOSK FILM X SIDE
    SALLE LIT DOSSIER SERVICE URGENCES URG CONSULT CONSULTATION PEDIATRIE MATERNITE HOPITAL CS CSI CSPS CSB
    REGISTRE NUMERO
    CAMA PROCESSO ENFERMARIA URGENCIA SERVICO CONSULTA PEDIATRIA MATERNIDADE US LIVRO REGISTO
    WODI KITANDA KLINIKI
    """.split()  # noqa: SIM905 (a list literal of 120 quoted words would be harder to read)
)


#: Shapes of patient identifiers a clinic's pattern should not match (a warning at start if it does).
_IDENTIFIER_SAMPLES = ("0712 345 678", "0712345678", "12345678", "20190304", "2019-03-04", "JOHN-SMITH-1")


class CaseRefError(ValueError):
    """A case reference refused; the message says what to type instead."""


@dataclass(frozen=True)
class CaseRefRules:
    """The clinic's register-number pattern (matched in full; None: the clinic has none) and an
    example of one."""

    pattern: re.Pattern[str] | None
    example: str

    def check(self, raw: str) -> str | None:
        """The stripped reference, None when blank; CaseRefError when it breaks a rule."""
        value = raw.strip()
        if not value:
            return None
        if len(value) > CASE_REF_MAX:
            raise CaseRefError(
                gettext(
                    "The case reference is %(length)d characters long; use %(rule)s.",
                    length=len(value),
                    rule=self._rule(),
                )
            )
        if self.pattern is not None and _CHARACTERS.fullmatch(value) and self.pattern.fullmatch(value):
            return value
        kind = identifier_kind(value)
        if kind is not None:
            raise CaseRefError(self._refusal(kind))
        if not _CHARACTERS.fullmatch(value):
            raise CaseRefError(
                gettext(
                    "The case reference has characters that are not allowed; use %(rule)s. "
                    "Never enter a patient's name.",
                    rule=self._rule(),
                )
            )
        if self.pattern is not None or not any(ch.isdigit() for ch in value):
            raise CaseRefError(
                gettext(
                    "The case reference is not one of this clinic's register numbers; type it like "
                    "%(example)s.",
                    example=self.example,
                )
            )
        return value

    def _refusal(self, kind: str) -> str:
        if kind == "date":
            return gettext(
                "The case reference looks like a date of birth. Type only the clinic's register "
                "number, like %(example)s.",
                example=self.example,
            )
        if kind == "phone":
            return gettext(
                "The case reference looks like a phone number. Type only the clinic's register "
                "number, like %(example)s; never a patient's phone number.",
                example=self.example,
            )
        if kind == "id":
            return gettext(
                "The case reference looks like an ID or phone number. Type only the clinic's register "
                "number, like %(example)s; never a patient's ID, passport or phone number.",
                example=self.example,
            )
        return gettext(
            "The case reference looks like a person's name. Type only the clinic's register "
            "number, like %(example)s.",
            example=self.example,
        )

    def _rule(self) -> str:
        return gettext(
            "letters A-Z, digits, space and . _ - / (at most %(max)d characters), like %(example)s",
            max=CASE_REF_MAX,
            example=self.example,
        )


def identifier_kind(value: str) -> str | None:
    """What patient identifier `value` looks like: "phone", "date", "id" or "name"; None if none.

    A phone number is named first (French mobiles, 06 12 34 56 78, also read as a date), then a
    date, so that a long number that is a date (20190304) is refused as one.
    """
    numbers = [_number_kind(number.group()) for number in _NUMBER.finditer(value)]
    if "phone" in numbers:
        return "phone"
    if _DATE.search(value) or _BIRTH_WORDS.search(value):
        return "date"
    if "id" in numbers or _ID_WORDS.search(value) or _PASSPORT.fullmatch(value):
        return "id"
    for first, second in itertools.pairwise(_name_words(value)):
        if first and second and max(len(first), len(second)) >= 2:  # not two initials (A-B-12)
            return "name"
    return None


def _number_kind(number: str) -> str | None:
    """ "phone" or "id" for a number too long to be a register's sequence; None for one that may be."""
    groups = re.findall(r"[0-9]+", number)
    digits = sum(len(group) for group in groups)
    international = number.lstrip().startswith(("+", "("))
    if international and digits >= _ID_DIGITS - 1:
        return "phone"
    if digits < _ID_DIGITS:
        return None
    years = [g for g in groups if len(g) == 4 and g[:2] in ("19", "20")]
    if len(groups) > 1 and years and digits - 4 <= _SEQUENCE_MAX:
        return None  # a year and a sequence number: OPD-2026-00123, 00123/2026
    return "phone" if groups[0].startswith("0") and 9 <= digits <= 11 else "id"


def _name_words(value: str) -> list[str]:
    """The reference's parts between separators: a word of letters that could be a name, or ""."""
    parts = [part for part in re.split(r"[\s._/-]+", value) if part]
    return [part if _WORD.fullmatch(part) and part.upper() not in REGISTER_WORDS else "" for part in parts]


def init_case_refs(app: Flask) -> None:
    """Compile the clinic's pattern once; a broken one stops the start with a message saying so."""
    source = app.config["CASE_REF_PATTERN"]
    try:
        pattern = re.compile(source) if source is not None else None
    except re.error as e:
        raise ValueError(f"CASE_REF_PATTERN {source!r} is not a valid regular expression ({e})") from e
    example = app.config["CASE_REF_EXAMPLE"]
    rules = CaseRefRules(pattern, example)
    let_through = [
        sample for sample in _IDENTIFIER_SAMPLES if pattern is not None and pattern.fullmatch(sample)
    ]
    if let_through:
        log.warning(
            "CASE_REF_PATTERN %r accepts what looks like patient identifiers (%s): the identifier rules "
            "are skipped for what it matches, so make it no wider than the clinic's register numbers",
            source,
            ", ".join(let_through),
        )
    try:
        rules.check(example)
    except CaseRefError as e:
        raise ValueError(f"CASE_REF_EXAMPLE {example!r} is refused by the case-reference rules: {e}") from e
    app.extensions[RULES_KEY] = rules


def rules() -> CaseRefRules:
    return current_app.extensions[RULES_KEY]
