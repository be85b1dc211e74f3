"""docs/openapi.yaml describes the API the kiosk actually serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import post_file

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docs/openapi.yaml: pip install pyyaml")

SPEC_PATH = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def test_spec_lists_exactly_the_api_routes(app: Flask, spec: dict[str, Any]) -> None:
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, operations in spec["paths"].items() for method in operations}
    assert documented == served


def test_responses_have_the_documented_fields(
    client: FlaskClient, spec: dict[str, Any], small_xray: bytes
) -> None:
    schemas = spec["components"]["schemas"]
    case = post_file(client, "/api/v1/predict", small_xray).get_json()
    assert set(case) == set(schemas["Case"]["required"]) == set(schemas["Case"]["properties"])
    page = client.get("/api/v1/results").get_json()
    assert set(page) == set(schemas["ResultsPage"]["required"])
    health = client.get("/healthz").get_json()
    assert set(health) == set(schemas["Health"]["required"])
    error = client.get("/api/v1/results?limit=0").get_json()
    assert set(error) == {"error"} and set(error["error"]) == set(
        schemas["Error"]["properties"]["error"]["required"]
    )


def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="pip install openapi-spec-validator")
    assert spec["openapi"].startswith("3.1")
    validator.validate(spec)


def test_the_spec_examples_are_valid_answers(spec: dict[str, Any]) -> None:
    """Each schema's example validates against its schema (OpenAPI 3.1 schemas are JSON Schema)."""
    jsonschema = pytest.importorskip("jsonschema", reason="installed with openapi-spec-validator")
    schemas = spec["components"]["schemas"]
    examples = {name: schema["example"] for name, schema in schemas.items() if "example" in schema}
    assert set(examples) == {"Error", "Case", "ResultsPage", "Health"}
    for name, example in examples.items():
        schema = {**schemas[name], "components": spec["components"]}  # for its "#/components/..." refs
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        jsonschema.Draft202012Validator(schema, format_checker=checker).validate(
            json.loads(json.dumps(example, default=str))
        )
