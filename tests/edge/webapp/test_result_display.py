"""What a result shows a nurse: the heatmap layer and its controls, refusals in plain words with a
thumbnail held only in memory, and times in the kiosk's own zone (UTC kept in the database)."""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image

from edge import quality
from edge.heatmap import COLOUR_STOPS, DISPLAY_LONG_SIDE
from edge.webapp.display import localtime
from edge.webapp.intake import refused_thumbnails
from edge.webapp.records import database
from tests.kiosk_exports import scored_upload

from .helpers import NURSE, NURSE_PIN, add_staff, login, post_file, stored_state

CSS = Path(__file__).resolve().parents[3] / "edge" / "webapp" / "static" / "kiosk.css"


def assess(client: FlaskClient, data: bytes) -> int:
    response = post_file(client, "/assess", data)
    assert response.status_code == 303
    return int(response.headers["Location"].rsplit("/", 1)[1])


def picture(client: FlaskClient, url: str, fmt: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.data))
    assert image.format == fmt
    return image


def test_result_lays_a_see_through_heatmap_over_the_xray_with_toggle_and_legend(
    client: FlaskClient, xray_bytes
) -> None:
    case_id = assess(client, xray_bytes(seed=21, width=1000, height=1200))
    text = client.get(f"/cases/{case_id}").data.decode()
    assert 'type="checkbox" class="heat-toggle" id="show-heatmap" checked' in text  # works without script
    assert 'id="heat-opacity"' in text and 'id="legend"' in text
    assert "low" in text and "high attention" in text
    base = picture(client, f"/cases/{case_id}/xray.jpg", "JPEG")
    assert base.size == (640, DISPLAY_LONG_SIDE)
    layer = picture(client, f"/cases/{case_id}/heatmap-layer.png", "PNG")
    assert layer.mode == "P" and "transparency" in layer.info
    assert layer.size[0] / layer.size[1] == pytest.approx(base.size[0] / base.size[1], abs=0.01)
    blended = picture(client, f"/cases/{case_id}/heatmap.png", "PNG")  # the report's and the API's
    assert blended.size == base.size and blended.mode == "RGB"


def test_a_heatmap_stored_by_an_older_kiosk_is_served_as_it_was(client: FlaskClient, data_dir, xray_bytes):
    case_id = assess(client, xray_bytes(seed=22, width=400, height=480))
    buffer = io.BytesIO()
    Image.new("RGB", (40, 48), (200, 10, 10)).save(buffer, format="PNG")
    conn = sqlite3.connect(database.db_path(data_dir))
    with conn:
        conn.execute("UPDATE heatmaps SET png = ? WHERE case_id = ?", (buffer.getvalue(), case_id))
    conn.close()
    assert client.get(f"/cases/{case_id}/heatmap.png").data == buffer.getvalue()


def test_legend_colours_are_the_heatmaps_colours() -> None:
    gradient = re.search(r"\.legend \.scale \{[^}]*linear-gradient\(to right, ([^;]*)\);", CSS.read_text())
    assert gradient, "kiosk.css has no colour scale"
    stops = re.findall(r"rgb\((\d+), (\d+), (\d+)\) (\d+)%", gradient.group(1))
    assert [[int(p) / 100, int(r), int(g), int(b)] for r, g, b, p in stops] == COLOUR_STOPS.tolist()


def test_refusal_says_what_is_wrong_and_what_to_do_with_the_figures_apart(
    client: FlaskClient, data_dir, colour_photo: bytes
) -> None:
    case_id = assess(client, colour_photo)
    text = client.get(f"/cases/{case_id}").data.decode()
    assert quality.PLAIN_WORDS[quality.COLOUR_PHOTO] in text
    assert re.search(r'class="technical"[^>]*>Details for the technician: [^<]*colourfulness \d', text)
    thumb = picture(client, f"/cases/{case_id}/refused.jpg", "JPEG")
    assert max(thumb.size) <= refused_thumbnails.THUMB_LONG_SIDE
    assert stored_state(data_dir) == (1, [])  # the thumbnail is nowhere on disk
    report = client.get(f"/cases/{case_id}/report").data.decode()
    assert quality.PLAIN_WORDS[quality.COLOUR_PHOTO] in report


def test_a_refused_films_thumbnail_is_dropped_after_a_while(client: FlaskClient, app, colour_photo) -> None:
    app.extensions["pneumoedge.refused_thumbnails"] = refused_thumbnails.RefusedThumbnails(keep_s=0.0)
    case_id = assess(client, colour_photo)
    assert client.get(f"/cases/{case_id}/refused.jpg").status_code == 404
    assert "Refused images are not kept." in client.get(f"/cases/{case_id}").data.decode()


def test_only_the_most_recent_thumbnails_are_held() -> None:
    held = refused_thumbnails.RefusedThumbnails(capacity=2)
    for case_id in (1, 2, 3):
        held.put(case_id, b"jpeg%d" % case_id)
    assert (held.get(1), held.get(2), held.get(3)) == (None, b"jpeg2", b"jpeg3")


@pytest.mark.parametrize("flag", sorted(quality.PLAIN_WORDS))
def test_every_refusal_has_plain_words_without_figures(flag: str) -> None:
    words = quality.plain_words([flag])
    assert len(words) == 1 and not re.search(r"\d", words[0])
    assert words[0].endswith(".") and len(words[0].split(". ")) >= 2  # what is wrong. what to do.


def test_plain_words_say_each_thing_once_and_cover_unknown_flags() -> None:
    assert quality.plain_words([quality.ROTATED, quality.ROTATED]) == [quality.PLAIN_WORDS[quality.ROTATED]]
    assert quality.plain_words(["from_a_newer_kiosk"])[0].startswith("The kiosk cannot assess this image.")


def test_times_are_shown_in_the_kiosk_zone_and_stored_in_utc(make_app, data_dir, xray_bytes) -> None:
    app = make_app(TIMEZONE="Asia/Kathmandu")  # UTC+05:45: no whole-hour coincidence
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    login(client)
    case_id = assess(client, xray_bytes(seed=23, width=300, height=360))
    case = database.get_case(database.connect(database.db_path(data_dir)), case_id)
    assert case.created_utc.endswith("Z")  # the database keeps UTC
    shown = localtime.format_local(case.created_utc, localtime.parse_zone("Asia/Kathmandu"))
    assert shown.endswith("+0545")
    for url in (f"/cases/{case_id}", "/history", f"/cases/{case_id}/report"):
        assert shown in client.get(url).data.decode(), url
    assert "Time (+0545)" in client.get("/history").data.decode()
    export = client.get("/history/export.csv").data.decode()
    assert case.created_utc in export and shown not in export  # exports stay in UTC


def test_history_dates_are_local_days_and_the_api_keeps_utc(make_app, data_dir, xray_bytes) -> None:
    app = make_app(TIMEZONE="Asia/Kathmandu")
    add_staff(app, NURSE, NURSE_PIN)
    client = app.test_client()
    login(client)
    case_id = assess(client, xray_bytes(seed=25, width=300, height=360))
    conn = sqlite3.connect(database.db_path(data_dir))
    with conn:  # 20:00 UTC on 31 January is 01:45 on 1 February in Kathmandu
        conn.execute("UPDATE cases SET created_utc = '2026-01-31T20:00:00.000Z' WHERE id = ?", (case_id,))
    conn.close()

    def listed(url: str) -> bool:
        return f'/cases/{case_id}"' in client.get(url).data.decode()

    assert listed("/history?date_from=2026-02-01&date_to=2026-02-01")
    assert not listed("/history?date_from=2026-01-31&date_to=2026-01-31")
    assert "2026-02-01 01:45 +0545" in client.get("/history").data.decode()
    api = client.get("/api/v1/results?date_from=2026-01-31&date_to=2026-01-31").get_json()
    assert [case["id"] for case in api["results"]] == [case_id]  # the API's dates are UTC days


def test_local_time_formatting() -> None:
    zone = localtime.parse_zone("Africa/Nairobi")
    assert localtime.format_local("2026-01-31T22:15:02.123Z", zone) == "2026-02-01 01:15 EAT"
    assert localtime.format_local("", zone) == ""


def test_an_unknown_time_zone_stops_the_kiosk_with_a_message(make_app) -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        make_app(TIMEZONE="Mars/Olympus")


@pytest.mark.parametrize(("probability", "uncertain"), [(0.3, True), (0.9, False)])
def test_a_referral_in_the_refer_band_says_uncertain_refer(
    client: FlaskClient, data_dir: Path, probability: float, uncertain: bool
) -> None:
    conn = database.connect(database.db_path(data_dir))
    case = database.insert_case(
        conn,
        scored_upload(
            "c" * 64, label="PNEUMONIA", probability=probability, threshold=0.2, refer_band_upper=0.83
        ),
        None,
    )
    result = client.get(f"/cases/{case.id}").data.decode()
    report = client.get(f"/cases/{case.id}/report").data.decode()
    history = client.get("/history").data.decode()
    assert ('id="uncertain"' in result) is uncertain
    assert ("Uncertain: refer" in report) is uncertain
    assert ('class="tag uncertain"' in history) is uncertain
