"""IMDS credential paths, with and without an MFA session."""

import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import MFA_NEEDED_MESSAGE, ROLE_NAME, MetadataServer, http_session

ROLE_LIST_PATH = "/latest/meta-data/iam/security-credentials/"
CREDENTIALS_PATH = ROLE_LIST_PATH + ROLE_NAME
EXTENDED_ROLE_LIST_PATH = "/latest/meta-data/iam/security-credentials-extended/"
TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CREDENTIAL_FIELDS = {"Code", "LastUpdated", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}

# SDKs give up on an IMDS request after 1 s or less (botocore's default read
# timeout is 1 s), far too soon for a person to type an MFA code. So a request
# without a session must fail at once instead of waiting for one.
NO_SESSION_MAX_SECONDS = 0.5
CONCURRENT_REQUESTS = 50

# botocore's InstanceMetadataFetcher._evaluate_expiration moves the expiry of
# credentials that expire within 12 to 20 minutes (10 minutes plus 2 to 10
# minutes of jitter) to 12 to 20 minutes from now, past their real expiry.
# Served credentials need a margin beyond that.
MIN_EXPIRATION_MARGIN = timedelta(minutes=25)


def parse_timestamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("path", [ROLE_LIST_PATH, ROLE_LIST_PATH.rstrip("/")])
def test_role_list_is_role_name(server: MetadataServer, path: str) -> None:
    token = server.fetch_token()

    response = server.http.get(
        f"{server.url}{path}",
        headers={"X-aws-ec2-metadata-token": token},
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 200, response.text
    # botocore appends the body to the URL of the next request, so it must be the bare name.
    assert response.text == ROLE_NAME


@pytest.mark.parametrize("path", [CREDENTIALS_PATH, CREDENTIALS_PATH + "/"])
def test_credentials_match_session(server: MetadataServer, mfa_session: dict, path: str) -> None:
    token = server.fetch_token()

    response = server.http.get(
        f"{server.url}{path}",
        headers={"X-aws-ec2-metadata-token": token},
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 200, response.text
    credentials = response.json()
    assert set(credentials) >= CREDENTIAL_FIELDS
    for field in CREDENTIAL_FIELDS:
        assert isinstance(credentials[field], str), f"{field} is not a string: {credentials[field]!r}"
    assert credentials["Code"] == "Success"
    assert credentials["Type"] == "AWS-HMAC"
    assert credentials["AccessKeyId"] == mfa_session["accessKey"]
    assert credentials["SecretAccessKey"] == mfa_session["secretKey"]
    assert credentials["Token"] == mfa_session["sessionToken"]
    assert credentials["Expiration"] == mfa_session["expiration"]
    assert TIMESTAMP_PATTERN.match(credentials["Expiration"]), credentials["Expiration"]
    assert TIMESTAMP_PATTERN.match(credentials["LastUpdated"]), credentials["LastUpdated"]


def test_credentials_expiration_margin(server: MetadataServer, mfa_session: dict) -> None:
    token = server.fetch_token()

    credentials = server.get_metadata(CREDENTIALS_PATH, token).json()

    expiration = parse_timestamp(credentials["Expiration"])
    assert expiration - datetime.now(timezone.utc) >= MIN_EXPIRATION_MARGIN, credentials["Expiration"]


def test_credentials_unknown_role_is_404(server: MetadataServer, mfa_session: dict) -> None:
    token = server.fetch_token()

    response = server.get_metadata(ROLE_LIST_PATH + "other-role", token)

    assert response.status_code == 404, response.text
    assert "AccessKeyId" not in response.text


@pytest.mark.parametrize("path", [EXTENDED_ROLE_LIST_PATH, EXTENDED_ROLE_LIST_PATH + ROLE_NAME])
def test_extended_credentials_path_status(server: MetadataServer, mfa_session: dict, path: str) -> None:
    token = server.fetch_token()

    response = server.get_metadata(path, token)

    # Clients fall back to the legacy path only on 404, so anything else but a full 200 breaks them.
    assert response.status_code in {200, 404}, response.text


def test_credentials_without_session_fail_fast(server: MetadataServer) -> None:
    token = server.fetch_token()

    started = time.monotonic()
    response = server.get_metadata(CREDENTIALS_PATH, token)
    elapsed = time.monotonic() - started

    assert elapsed < NO_SESSION_MAX_SECONDS, f"answered after {elapsed:.3f} s"
    assert response.status_code != 200
    assert response.status_code == 404, response.text
    assert "AccessKeyId" not in response.text
    assert "SecretAccessKey" not in response.text
    assert response.text.strip(), "no hint in the body"
    assert len(response.text) < 1000, f"hint is not short: {len(response.text)} characters"


def test_credentials_after_delete_fail(server: MetadataServer, mfa_session: dict) -> None:
    token = server.fetch_token()
    assert server.get_metadata(CREDENTIALS_PATH, token).status_code == 200

    assert server.delete_session().status_code == 200

    response = server.get_metadata(CREDENTIALS_PATH, token)
    assert response.status_code == 404, response.text
    assert "AccessKeyId" not in response.text


def test_concurrent_requests_log_one_mfa_request(server: MetadataServer) -> None:
    token = server.fetch_token()
    lines_before = server.count_log_lines(MFA_NEEDED_MESSAGE)
    barrier = threading.Barrier(CONCURRENT_REQUESTS)
    status_codes: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def request_credentials() -> None:
        http = http_session()
        barrier.wait(timeout=10)
        try:
            response = http.get(
                f"{server.url}{CREDENTIALS_PATH}",
                headers={"X-aws-ec2-metadata-token": token},
                timeout=5,
            )
        except requests.RequestException as error:
            with lock:
                errors.append(error)
            return
        with lock:
            status_codes.append(response.status_code)

    threads = [threading.Thread(target=request_credentials) for _ in range(CONCURRENT_REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not errors, f"{len(errors)} requests failed, first: {errors[0]!r}"
    assert len(status_codes) == CONCURRENT_REQUESTS
    assert 200 not in status_codes
    assert set(status_codes) == {404}, status_codes

    # Give a late duplicate log line the chance to appear before counting.
    time.sleep(0.5)
    new_lines = server.count_log_lines(MFA_NEEDED_MESSAGE) - lines_before
    assert new_lines == 1, f"{new_lines} new '{MFA_NEEDED_MESSAGE}' lines for {CONCURRENT_REQUESTS} requests"
