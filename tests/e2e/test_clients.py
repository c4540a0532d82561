"""Third-party AWS clients that fetch credentials through IMDSv2 and call STS on moto.

Each client runs with empty shared config and credentials files and no AWS_*
credential variables, so the metadata server is its only credential source.
"""

import json
import os
import re
import subprocess

import boto3
import pytest

from conftest import AWS_CLI_V1, AWS_CLI_V2, JS_DIR, REGION, MetadataServer

ACCOUNT_ID = "123456789012"
CLIENT_TIMEOUT_SECONDS = 120

# botocore logs every request at debug level, including the SigV4
# Authorization header "... Credential=<access key>/<date>/...".
SIGNING_KEY_PATTERN = re.compile(r"Credential=([A-Z0-9]+)/")


def run_client(command: list[str], environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    assert result.returncode == 0, (
        f"{command[0]} exited with code {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr (last 4000 characters):\n{result.stderr[-4000:]}"
    )
    return result


def signing_access_keys(debug_output: str) -> set[str]:
    return set(SIGNING_KEY_PATTERN.findall(debug_output))


def test_boto3_gets_session_credentials(
    server: MetadataServer,
    mfa_session: dict,
    client_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in client_environment.items():
        monkeypatch.setenv(name, value)

    session = boto3.Session()
    credentials = session.get_credentials()
    assert credentials is not None, "boto3 found no credentials"
    identity = session.client("sts", region_name=REGION).get_caller_identity()

    assert credentials.method == "iam-role"
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key == mfa_session["accessKey"]
    assert frozen.secret_key == mfa_session["secretKey"]
    assert frozen.token == mfa_session["sessionToken"]
    assert identity["Account"] == ACCOUNT_ID


def test_aws_cli_v1_gets_session_credentials(
    server: MetadataServer, mfa_session: dict, client_environment: dict[str, str]
) -> None:
    if not AWS_CLI_V1.is_file():
        pytest.fail(f"AWS CLI v1 not found at {AWS_CLI_V1}: install awscli from tests/e2e/requirements.txt")
    version = run_client([str(AWS_CLI_V1), "--version"], client_environment)
    assert (version.stdout + version.stderr).startswith("aws-cli/1.")

    result = run_client(
        [str(AWS_CLI_V1), "sts", "get-caller-identity", "--output", "json", "--debug"],
        client_environment,
    )

    assert json.loads(result.stdout)["Account"] == ACCOUNT_ID
    assert "Found credentials from IAM Role: local-credentials" in result.stderr
    assert signing_access_keys(result.stderr) == {mfa_session["accessKey"]}


def test_aws_cli_v2_gets_session_credentials(
    server: MetadataServer, mfa_session: dict, moto_url: str, client_environment: dict[str, str]
) -> None:
    if not AWS_CLI_V2.is_file():
        pytest.fail(f"AWS CLI v2 not found at {AWS_CLI_V2}: install Debian's awscli package")
    version = run_client([str(AWS_CLI_V2), "--version"], client_environment)
    assert (version.stdout + version.stderr).startswith("aws-cli/2.")

    # AWS CLI v2 2.9.19 (Debian 12) ignores AWS_ENDPOINT_URL_STS, so it needs --endpoint-url.
    result = run_client(
        [
            str(AWS_CLI_V2),
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            moto_url,
            "--output",
            "json",
            "--debug",
        ],
        client_environment,
    )

    assert json.loads(result.stdout)["Account"] == ACCOUNT_ID
    assert "Found credentials from IAM Role: local-credentials" in result.stderr
    assert signing_access_keys(result.stderr) == {mfa_session["accessKey"]}


def test_javascript_v3_gets_session_credentials(
    server: MetadataServer, mfa_session: dict, client_environment: dict[str, str]
) -> None:
    if not (JS_DIR / "node_modules" / "@aws-sdk" / "client-sts").is_dir():
        pytest.fail(f"JavaScript SDK not installed: run `npm ci` in {JS_DIR}")

    result = run_client(["node", str(JS_DIR / "caller-identity.mjs")], client_environment)

    output = json.loads(result.stdout)
    assert output["accessKeyId"] == mfa_session["accessKey"]
    assert output["account"] == ACCOUNT_ID
    assert output["expiration"] is not None


def test_clients_fail_after_delete(
    server: MetadataServer, mfa_session: dict, client_environment: dict[str, str]
) -> None:
    assert server.delete_session().status_code == 200
    assert server.get_session().status_code == 404

    result = subprocess.run(
        [str(AWS_CLI_V1), "sts", "get-caller-identity", "--output", "json"],
        env=client_environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )

    assert result.returncode != 0, result.stdout
    assert "Unable to locate credentials" in result.stderr
