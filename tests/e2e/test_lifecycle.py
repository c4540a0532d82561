"""Process lifecycle: shutdown on SIGTERM and state kept across a restart."""

import subprocess

from conftest import BINARY, PROFILE, MetadataServer, environment_without_aws, find_free_port

ROLE_LIST_PATH = "/latest/meta-data/iam/security-credentials/"


def test_sigterm_exits_cleanly(server: MetadataServer) -> None:
    # stop_and_check asserts exit code 0 and that the port is free again.
    server.stop_and_check()


def test_sigterm_with_session_exits_cleanly(server: MetadataServer, mfa_session: dict) -> None:
    server.stop_and_check()


def test_token_survives_restart(server: MetadataServer) -> None:
    token = server.fetch_token()
    assert server.get_metadata(ROLE_LIST_PATH, token).status_code == 200

    server.restart()

    response = server.get_metadata(ROLE_LIST_PATH, token)
    assert response.status_code == 200, response.text


def test_state_dir_has_signing_key(server: MetadataServer) -> None:
    server.fetch_token()

    files = [path for path in server.state_dir.rglob("*") if path.is_file()]

    assert files, f"no file in --state-dir {server.state_dir}"
    for path in files:
        mode = path.stat().st_mode & 0o777
        assert mode & 0o077 == 0, f"{path} is readable by others: mode {oct(mode)}"


def test_malformed_sts_endpoint_stops_start_up(tmp_path, profile_files) -> None:
    environment = environment_without_aws()
    environment.update(
        {
            "HOME": str(tmp_path),
            "AWS_CONFIG_FILE": str(profile_files["config"]),
            "AWS_SHARED_CREDENTIALS_FILE": str(profile_files["credentials"]),
            "AWS_ENDPOINT_URL_STS": "not a url",
        }
    )
    result = subprocess.run(
        [str(BINARY), "--headless", "--listen", f"127.0.0.1:{find_free_port()}", "--profile", PROFILE,
         "--state-dir", str(tmp_path / "state")],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert "AWS_ENDPOINT_URL_STS" in result.stderr
    assert "http://" in result.stderr
