"""IMDSv2 session tokens: PUT /latest/api/token and their use on GET requests."""

import http.client
import string
import time

import pytest

from conftest import MetadataServer

ROLE_LIST_PATH = "/latest/meta-data/iam/security-credentials/"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


@pytest.mark.parametrize(
    "ttl_seconds",
    [
        pytest.param("0", id="zero"),
        pytest.param("21601", id="above-max"),
        pytest.param("-1", id="negative"),
        pytest.param("abc", id="not-a-number"),
        pytest.param("", id="empty"),
        pytest.param(None, id="missing"),
    ],
)
def test_token_invalid_ttl_is_400(server: MetadataServer, ttl_seconds: str | None) -> None:
    response = server.put_token(ttl_seconds)

    assert response.status_code == 400, response.text


@pytest.mark.parametrize("ttl_seconds", ["1", "21600"])
def test_token_valid_ttl_is_200(server: MetadataServer, ttl_seconds: str) -> None:
    response = server.put_token(ttl_seconds)

    assert response.status_code == 200, response.text
    assert response.headers.get(TTL_HEADER) == ttl_seconds
    assert response.headers["Content-Type"].startswith("text/plain")
    token = response.text
    assert token, "token body is empty"
    # SDKs send the token back as a header value, so it must be printable ASCII without whitespace.
    assert all(character in string.printable and not character.isspace() for character in token), repr(token)


def test_token_works_without_session(server: MetadataServer) -> None:
    token = server.fetch_token()

    response = server.get_metadata(ROLE_LIST_PATH, token)

    assert response.status_code == 200, response.text


def test_token_put_without_content_length(server: MetadataServer) -> None:
    # requests always sends Content-Length, so build the request by hand.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.putrequest("PUT", "/latest/api/token")
        connection.putheader(TTL_HEADER, "300")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 200, body
    assert response.getheader(TTL_HEADER) == "300"


def test_token_put_with_expect_continue(server: MetadataServer) -> None:
    response = server.http.put(
        f"{server.url}/latest/api/token",
        headers={TTL_HEADER: "300", "Expect": "100-continue", "Content-Length": "0"},
        timeout=5,
    )

    assert response.status_code == 200, response.text


def test_token_put_forwarded_is_403(server: MetadataServer) -> None:
    response = server.http.put(
        f"{server.url}/latest/api/token",
        headers={TTL_HEADER: "300", "X-Forwarded-For": "203.0.113.7"},
        timeout=5,
    )

    assert response.status_code == 403, response.text


def test_get_without_token_is_401(server: MetadataServer) -> None:
    response = server.get_metadata(ROLE_LIST_PATH, token=None)

    assert response.status_code == 401, response.text


@pytest.mark.parametrize("token", ["bogus", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"])
def test_get_with_bogus_token_is_401(server: MetadataServer, token: str) -> None:
    response = server.get_metadata(ROLE_LIST_PATH, token)

    assert response.status_code == 401, response.text


def test_get_with_altered_token_is_401(server: MetadataServer) -> None:
    token = server.fetch_token()
    # Change a character in the middle: the last base64 character can carry unused bits.
    middle = len(token) // 2
    replacement = "A" if token[middle] != "A" else "B"
    altered = token[:middle] + replacement + token[middle + 1 :]

    response = server.get_metadata(ROLE_LIST_PATH, altered)

    assert response.status_code == 401, response.text


def test_get_with_expired_token_is_401(server: MetadataServer) -> None:
    token = server.fetch_token("1")
    assert server.get_metadata(ROLE_LIST_PATH, token).status_code == 200

    time.sleep(2.1)

    response = server.get_metadata(ROLE_LIST_PATH, token)
    assert response.status_code == 401, response.text
