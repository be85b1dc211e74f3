"""The real kiosk: `python -m edge serve` (waitress, several threads) on a loopback port.

Bad input over real HTTP, concurrent clients, and a SIGKILL under load: every result the kiosk
acknowledged must be in the database afterwards, with its audit entry in one unbroken hash chain,
and the database must pass its integrity check.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge.bundle import Bundle
from edge.webapp.records import audit_chain, database
from tests.tiny_bundle import xray_bytes

from .bad_uploads import CATALOGUE, MULTIPART, BadUpload, file_body
from .helpers import stored_state
from .kiosk_server import KioskServer

CLIENTS = 4
REQUESTS_PER_CLIENT = 50


@pytest.fixture(scope="module")
def server(tiny_bundle_int8: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KioskServer]:
    kiosk = KioskServer(tiny_bundle_int8.root, tmp_path_factory.mktemp("served") / "data").start()
    yield kiosk
    kiosk.stop()


@pytest.fixture(scope="module")
def uploads() -> list[bytes]:
    """A few distinct small X-rays, reused round-robin by the load tests."""
    return [xray_bytes(seed=100 + k, width=300, height=360) for k in range(8)]


def predict(kiosk: KioskServer, data: bytes, case_ref: str) -> dict:
    reply = kiosk.request("POST", "/api/v1/predict", file_body(data, case_ref=case_ref.encode()), MULTIPART)
    assert reply.status == 201, reply.body
    return reply.json()


def chain_of(data_dir: Path) -> tuple[audit_chain.ChainReport, set[int]]:
    """The audit chain's state, and the cases with a `screen` entry."""
    conn = sqlite3.connect(database.db_path(data_dir))
    try:
        screened = {row[0] for row in conn.execute("SELECT case_id FROM audit_log WHERE action = 'screen'")}
        return audit_chain.verify(conn), screened
    finally:
        conn.close()


def committed_cases(data_dir: Path) -> dict[int, tuple[str, str]]:
    conn = sqlite3.connect(database.db_path(data_dir))
    try:
        return {
            row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, case_ref, input_sha256 FROM cases")
        }
    finally:
        conn.close()


@pytest.mark.parametrize("bad", CATALOGUE, ids=lambda bad: bad.id)
def test_bad_upload_over_http_gets_its_4xx_and_the_kiosk_keeps_serving(
    server: KioskServer, bad: BadUpload
) -> None:
    before = stored_state(server.data_dir)
    reply = server.request("POST", "/api/v1/predict", bad.body, bad.content_type)
    assert reply.status == bad.status
    error = reply.json()["error"]
    assert bad.message in error["message"]
    assert bad.detail is None or bad.detail in error["detail"]
    assert stored_state(server.data_dir) == before
    health = server.request("GET", "/healthz")
    assert health.status == 200 and health.json()["status"] == "ok"


def test_concurrent_clients_every_acknowledged_result_is_committed(
    server: KioskServer, uploads: list[bytes]
) -> None:
    def client(k: int) -> list[dict]:
        return [
            predict(server, uploads[(k + i) % len(uploads)], f"C{k}-{i}") for i in range(REQUESTS_PER_CLIENT)
        ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        acknowledged = [case for cases in pool.map(client, range(CLIENTS)) for case in cases]
    assert len(acknowledged) == CLIENTS * REQUESTS_PER_CLIENT
    assert len({case["id"] for case in acknowledged}) == len(acknowledged)
    stored = committed_cases(server.data_dir)
    for case in acknowledged:
        assert stored[case["id"]] == (case["case_ref"], case["input_sha256"])
    chain, screened = chain_of(server.data_dir)
    assert chain.intact, chain.summary()  # 4 writers at once: one unbroken chain
    assert {case["id"] for case in acknowledged} <= screened


def test_sigkill_under_load_loses_no_acknowledged_result(
    tiny_bundle_int8: Bundle, tmp_path: Path, uploads: list[bytes]
) -> None:
    kiosk = KioskServer(tiny_bundle_int8.root, tmp_path / "data").start()
    acknowledged: list[dict] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(k: int) -> None:
        for i in range(REQUESTS_PER_CLIENT):  # bounded even if the kill never comes
            if killed.is_set():
                return
            try:
                case = predict(kiosk, uploads[(k + i) % len(uploads)], f"K{k}-{i}")
            except (OSError, AssertionError):
                return  # the server died mid-request: that result was never acknowledged
            with lock:
                acknowledged.append(case)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for _ in range(600):  # kill once a good number of results are in, and requests are in flight
        with lock:
            if len(acknowledged) >= 40:
                break
        threading.Event().wait(0.05)
    kiosk.kill()
    killed.set()
    for thread in threads:
        thread.join(timeout=60)
    assert len(acknowledged) >= 40

    kiosk.start()  # the same data folder
    try:
        conn = sqlite3.connect(database.db_path(kiosk.data_dir))
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        stored = committed_cases(kiosk.data_dir)
        for case in acknowledged:
            assert stored[case["id"]] == (case["case_ref"], case["input_sha256"])
        assert predict(kiosk, uploads[0], "RESTART-1")["status"] == "ok"
        chain, screened = chain_of(kiosk.data_dir)
        assert chain.intact, chain.summary()  # the kill left no half-written link
        assert {case["id"] for case in acknowledged} <= screened
    finally:
        kiosk.stop()


def test_access_code_from_the_environment_guards_pages_and_api(
    tiny_bundle_int8: Bundle, tmp_path: Path, uploads: list[bytes]
) -> None:
    kiosk = KioskServer(tiny_bundle_int8.root, tmp_path / "data", access_code="clinic-code-2026").start()
    try:
        assert "clinic-code-2026" not in (tmp_path / "data" / "access-code.hash").read_text()
        page = kiosk.request("GET", "/")
        assert page.status == 302 and "/login" in page.headers["Location"]
        denied = kiosk.request("GET", "/api/v1/results", headers={"Authorization": "Bearer wrong-code"})
        assert denied.status == 401
        assert predict(kiosk, uploads[0], "LOCKED-1")["status"] == "ok"  # with the right bearer code
        assert kiosk.request("GET", "/healthz", headers={"Authorization": ""}).status == 200
    finally:
        kiosk.stop()
