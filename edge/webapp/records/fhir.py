"""Confirmed results as HL7 FHIR R4 `DiagnosticReport` resources, in one JSON `Bundle`.

One report per case with a clinician's confirmed diagnosis, so a clinic running OpenMRS or a
national health record can import what the clinician decided (the model's reading comes along in
the text, never as the conclusion). No patient is named: the report has no `subject`, and its only
identifier is the clinic's own case reference. Plain dictionaries and the standard library: the
kiosk needs no FHIR package; the tests validate the output with one (fhir.resources).

Codes: LOINC 36554-4 "XR Chest Single view" (the film screened is one frontal chest X-ray);
category RAD (HL7 v2 table 0074, "Radiology"); conclusion codes from SNOMED CT, 233604007
"Pneumonia (disorder)" and 168731009 "Chest X-ray normal (finding)".
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterable
from typing import Any

from edge.webapp.records.audit_chain import Head
from edge.webapp.records.database import Case

MEDIA_TYPE = "application/fhir+json"
CASE_REF_TYPE = "Clinic case reference"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
CHEST_XRAY = {"system": LOINC, "code": "36554-4", "display": "XR Chest Single view"}
RADIOLOGY = {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology"}
CONCLUSION_CODES = {
    "PNEUMONIA": {"system": SNOMED, "code": "233604007", "display": "Pneumonia (disorder)"},
    "NORMAL": {"system": SNOMED, "code": "168731009", "display": "Chest X-ray normal (finding)"},
}
#: The Bundle's meta tag holding the audit chain head, `N:SHA256` (entry number and hash).
AUDIT_HEAD_SYSTEM = "urn:pneumoedge:audit-chain-head"
AUDIT_HEAD = "PneumoEdge audit log chain head (entry:sha256) when exported"
#: Names the kiosk's records in fullUrl and ids: the same case always gets the same id.
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:pneumoedge:case")


def bundle(
    cases: Iterable[Case], corrected: set[int], timestamp_utc: str, intended_use: str, audit_head: Head | None
) -> dict[str, Any]:
    """A `collection` Bundle of the confirmed cases' reports; `corrected` holds the ids of cases whose
    confirmation was changed after it was first recorded (their reports are `amended`). The audit
    log's head when it was made (edge.webapp.records.audit_chain) is a tag in the Bundle's `meta`."""
    entries = [
        {
            "fullUrl": f"urn:uuid:{report_uuid(case)}",
            "resource": diagnostic_report(case, case.id in corrected, intended_use),
        }
        for case in cases
        if case.confirmed_label is not None
    ]
    result: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "timestamp": timestamp_utc}
    if audit_head is not None:
        result["meta"] = {
            "tag": [{"system": AUDIT_HEAD_SYSTEM, "code": str(audit_head), "display": AUDIT_HEAD}]
        }
    return result | {"entry": entries}


def report_uuid(case: Case) -> uuid.UUID:
    """Stable per case (and per upload: the record number alone repeats across kiosks)."""
    return uuid.uuid5(_NAMESPACE, f"{case.input_sha256}:{case.id}")


def diagnostic_report(case: Case, amended: bool, intended_use: str) -> dict[str, Any]:
    """One confirmed case as a DiagnosticReport (R4)."""
    label = case.confirmed_label
    if label not in CONCLUSION_CODES:
        raise ValueError(f"case #{case.id} has no confirmed diagnosis to export")
    conclusion = (
        f"Clinician's diagnosis: {label}. PneumoEdge screening result: {case.label} "
        f"(probability of pneumonia {case.probability:.3f}, operating threshold {case.threshold:.3f}, "
        f"model {case.model_name} sha256 {case.model_sha256[:12]})."
    )
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": str(report_uuid(case)),
        "text": {"status": "generated", "div": _narrative(case, conclusion, intended_use)},
        "status": "amended" if amended else "final",
        "category": [{"coding": [RADIOLOGY]}],
        "code": {"coding": [CHEST_XRAY], "text": "Chest X-ray screening"},
        "effectiveDateTime": case.created_utc,
        "issued": case.confirmed_utc,
        "performer": [{"display": case.confirmed_by or "unknown"}],
        "conclusion": conclusion,
        "conclusionCode": [{"coding": [CONCLUSION_CODES[label]], "text": label}],
    }
    if case.case_ref:
        report["identifier"] = [
            {"use": "usual", "type": {"text": "Clinic case reference"}, "value": case.case_ref}
        ]
    return report


def _narrative(case: Case, conclusion: str, intended_use: str) -> str:
    """The human-readable text every FHIR resource should carry, with the intended-use statement."""
    parts = [
        conclusion,
        f"Confirmed by {case.confirmed_by or 'unknown'} at {case.confirmed_utc}.",
        intended_use,
    ]
    body = "".join(f"<p>{html.escape(part)}</p>" for part in parts)
    return f'<div xmlns="http://www.w3.org/1999/xhtml">{body}</div>'
