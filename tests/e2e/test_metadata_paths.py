"""Metadata paths other than credentials that SDKs read for region and identity."""

import re
from datetime import datetime

import pytest

from conftest import REGION, ROLE_NAME, MetadataServer

TIMESTAMP_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.mark.parametrize(
    ("path", "expected_body"),
    [
        ("/latest/meta-data/placement/region", REGION),
        ("/latest/meta-data/placement/availability-zone", REGION + "a"),
        ("/latest/meta-data/placement/availability-zone/", REGION + "a"),
        # Clients that join path parts with "/" can send "//", which must match like "/".
        ("/latest/meta-data//placement/region", REGION),
        ("/latest/meta-data/iam/security-credentials//", ROLE_NAME),
    ],
)
def test_text_path_body(server: MetadataServer, path: str, expected_body: str) -> None:
    token = server.fetch_token()

    response = server.http.get(
        f"{server.url}{path}",
        headers={"X-aws-ec2-metadata-token": token},
        allow_redirects=False,
        timeout=5,
    )

    assert response.status_code == 200, response.text
    # SDKs use the body as is, so a trailing newline would end up in the region name.
    assert response.text == expected_body


def test_instance_id_is_plausible(server: MetadataServer) -> None:
    token = server.fetch_token()

    response = server.get_metadata("/latest/meta-data/instance-id", token)

    assert response.status_code == 200, response.text
    assert re.fullmatch(r"i-[0-9a-f]{8,17}", response.text), response.text


def test_identity_document_fields(server: MetadataServer) -> None:
    token = server.fetch_token()

    response = server.get_metadata("/latest/dynamic/instance-identity/document", token)

    assert response.status_code == 200, response.text
    document = response.json()
    for field in ("region", "accountId", "instanceId", "availabilityZone", "pendingTime"):
        assert isinstance(document.get(field), str), f"{field} missing or not a string: {document}"
    assert document["region"] == REGION
    assert document["availabilityZone"] == REGION + "a"
    # pendingTime must be an RFC 3339 timestamp.
    datetime.fromisoformat(document["pendingTime"].replace("Z", "+00:00"))


def test_iam_info_fields(server: MetadataServer) -> None:
    token = server.fetch_token()

    response = server.get_metadata("/latest/meta-data/iam/info", token)

    assert response.status_code == 200, response.text
    info = response.json()
    assert info["Code"] == "Success"
    assert TIMESTAMP_PATTERN.match(info["LastUpdated"]), info["LastUpdated"]
    assert info["InstanceProfileArn"].startswith("arn:aws:iam::")
    assert isinstance(info["InstanceProfileId"], str)


@pytest.mark.parametrize("path", ["/latest/meta-data/no-such-path", "/latest/user-data", "/other"])
def test_unknown_path_is_404(server: MetadataServer, path: str) -> None:
    token = server.fetch_token()

    response = server.get_metadata(path, token)

    assert response.status_code == 404, response.text
