"""The management API under /manage/session: create, read and delete the MFA session."""

import re
from datetime import datetime, timedelta, timezone

import pytest

from conftest import MetadataServer

EXPIRATION_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
SESSION_FIELDS = {"accessKey", "secretKey", "sessionToken", "expiration"}


def check_session_object(session: dict) -> None:
    assert set(session) == SESSION_FIELDS
    for field in SESSION_FIELDS:
        assert isinstance(session[field], str), f"{field} is not a string: {session[field]!r}"
        assert session[field], f"{field} is empty"
    assert EXPIRATION_PATTERN.match(session["expiration"]), f"expiration not in YYYY-MM-DDTHH:MM:SSZ: {session['expiration']!r}"
    expiration = datetime.strptime(session["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert expiration > datetime.now(timezone.utc) + timedelta(minutes=5), f"session expires too soon: {session['expiration']}"


def test_get_without_session_is_404(server: MetadataServer) -> None:
    response = server.get_session()

    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert "session" not in body
    assert body, "404 body is an empty JSON value instead of an error"


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"token": "12345"}, id="five-digits"),
        pytest.param({"token": "1234567"}, id="seven-digits"),
        pytest.param({"token": "12345a"}, id="letter"),
        pytest.param({}, id="missing"),
    ],
)
def test_post_invalid_code_is_400(server: MetadataServer, form: dict) -> None:
    response = server.http.post(f"{server.url}/manage/session", data=form, timeout=10)

    assert response.status_code == 400, response.text
    assert server.get_session().status_code == 404


def test_post_invalid_json_code_is_400(server: MetadataServer) -> None:
    response = server.http.post(f"{server.url}/manage/session", json={"token": "12345"}, timeout=10)

    assert response.status_code == 400, response.text


def test_post_json_creates_session(server: MetadataServer) -> None:
    server.secrets.add("271828")
    response = server.http.post(f"{server.url}/manage/session", json={"token": "271828"}, timeout=30)

    assert response.status_code == 200, response.text
    server.secrets.update((response.json()["session"]["secretKey"], response.json()["session"]["sessionToken"]))
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"session"}
    check_session_object(body["session"])

    stored = server.get_session()
    assert stored.status_code == 200
    assert stored.json() == body


def test_post_form_creates_session(server: MetadataServer) -> None:
    server.secrets.add("314159")
    response = server.http.post(f"{server.url}/manage/session", data={"token": "314159"}, timeout=30)

    assert response.status_code == 200, response.text
    check_session_object(response.json()["session"])


def test_delete_removes_session(server: MetadataServer, mfa_session: dict) -> None:
    assert server.get_session().status_code == 200

    assert server.delete_session().status_code == 200
    assert server.get_session().status_code == 404

    # Deleting again is not an error.
    assert server.delete_session().status_code == 200


def test_delete_without_session_is_200(server: MetadataServer) -> None:
    assert server.delete_session().status_code == 200
