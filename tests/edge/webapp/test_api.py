"""The JSON API through the Flask test client: predict, results, health, and JSON refusals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from edge.screener import INTENDED_USE

from .bad_uploads import CATALOGUE, BadUpload
from .helpers import post_file, stored_state


def test_predict_returns_the_committed_case(client: FlaskClient, small_xray: bytes) -> None:
    response = post_file(client, "/api/v1/predict", small_xray, case_ref="API-1")
    assert response.status_code == 201
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/results/{body['id']}"
    assert body["status"] == "ok" and body["label"] in ("NORMAL", "PNEUMONIA")
    assert 0.0 <= body["probability"] <= 1.0 and body["threshold"] == 0.5
    assert body["case_ref"] == "API-1" and body["intended_use"] == INTENDED_USE
    assert len(body["input_sha256"]) == 64 and body["model_name"] == "tiny-int8"
    assert client.get(response.headers["Location"]).get_json() == body
    heatmap = client.get(body["heatmap_url"])
    assert heatmap.status_code == 200 and heatmap.data.startswith(b"\x89PNG")


def test_predict_reports_a_gate_refusal_as_a_result(client: FlaskClient, colour_photo: bytes) -> None:
    body = post_file(client, "/api/v1/predict", colour_photo).get_json()
    assert body["status"] == "rejected" and body["label"] is None and body["probability"] is None
    assert body["reason"] == "colour_photo" and body["detail"].startswith("cannot assess:")
    assert body["heatmap_url"] is None


@pytest.mark.parametrize("bad", CATALOGUE, ids=lambda bad: bad.id)
def test_bad_upload_gets_a_json_error_and_changes_nothing(
    client: FlaskClient, data_dir: Path, bad: BadUpload
) -> None:
    response = client.post("/api/v1/predict", data=bad.body, content_type=bad.content_type)
    assert response.status_code == bad.status
    error = response.get_json()["error"]
    assert error["code"] == bad.code
    assert bad.message in error["message"]
    assert ("detail" in error) == (bad.detail is not None)
    assert bad.detail is None or bad.detail in error["detail"]
    assert stored_state(data_dir) == (0, [])
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_results_filter_and_page(
    client: FlaskClient, xray_bytes: Callable[..., bytes], colour_photo: bytes
) -> None:
    ids = [
        post_file(
            client, "/api/v1/predict", xray_bytes(seed=s, width=300, height=360), case_ref=f"P-{s}"
        ).get_json()["id"]
        for s in range(5)
    ]
    rejected = post_file(client, "/api/v1/predict", colour_photo, case_ref="P-1").get_json()["id"]
    client.post(f"/cases/{ids[0]}/diagnosis", data={"diagnosis": "PNEUMONIA", "confirmed": "yes"})

    def result_ids(query: str) -> list[int]:
        return [case["id"] for case in client.get(f"/api/v1/results?{query}").get_json()["results"]]

    assert result_ids("") == [rejected, *reversed(ids)]
    assert result_ids("case_ref=P-1") == [rejected, ids[1]]  # exact match: not P-10..
    assert result_ids("status=rejected") == [rejected]
    assert result_ids("confirmed=true") == [ids[0]]
    first = client.get("/api/v1/results?limit=4").get_json()
    assert first["total"] == 6 and first["next_offset"] == 4 and len(first["results"]) == 4
    last = client.get("/api/v1/results?limit=4&offset=4").get_json()
    assert last["next_offset"] is None and [c["id"] for c in last["results"]] == [ids[1], ids[0]]
    assert last["results"][1]["confirmed_label"] == "PNEUMONIA"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be a whole number from 1 to 500, got '0'"),
        ("limit=ten", "limit must be a whole number from 1 to 500, got 'ten'"),
        ("limit=１", "limit must be a whole number from 1 to 500, got '１'"),
        ("offset=-1", "offset must be a whole number from 0 to"),
        ("date_from=31/01/2026", "date_from must be a date like 2026-01-31, got '31/01/2026'"),
        ("date_from=2026-02-02&date_to=2026-02-01", "date_from 2026-02-02 is after date_to 2026-02-01"),
        ("status=maybe", "status must be one of ok, rejected, got 'maybe'"),
        ("label=COVID", "label must be one of NORMAL, PNEUMONIA, got 'COVID'"),
        ("confirmed=yes", "confirmed must be true or false, got 'yes'"),
        (f"case_ref={'x' * 65}", "case_ref is 65 characters long; case references have at most 64"),
    ],
)
def test_bad_result_query_is_a_400_naming_the_value(client: FlaskClient, query: str, message: str) -> None:
    response = client.get(f"/api/v1/results?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_query"
    assert message in response.get_json()["error"]["message"]


def test_unknown_result_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/results/42")
    assert response.status_code == 404
    assert response.get_json()["error"] == {"code": "not_found", "message": "There is no case #42."}


def test_healthz_names_model_runtime_and_version(client: FlaskClient, app) -> None:
    body = client.get("/healthz").get_json()
    info = app.extensions["pneumoedge.kiosk"]
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["model"] == {"name": "tiny-int8", "sha256": info.model_sha256, "threshold": 0.5}
    assert body["runtime"].startswith(("ai-edge-litert", "tflite-runtime", "tensorflow"))
    assert body["version"] == info.version
