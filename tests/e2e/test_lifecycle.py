"""Process lifecycle: shutdown on SIGTERM and state kept across a restart."""

from conftest import MetadataServer

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
