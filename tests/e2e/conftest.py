"""Fixtures that run aws-mock-metadata against a moto STS server on loopback.

Every process started here gets an environment without the caller's AWS_*
variables and proxy settings. AWS_EC2_METADATA_SERVICE_ENDPOINT always points
at a loopback address, so no SDK falls back to the real metadata address
169.254.169.254.

Set AWS_MOCK_METADATA_BIN to test another build of the binary than
target/debug/aws-mock-metadata.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("AWS_MOCK_METADATA_BIN", REPO_ROOT / "target/debug/aws-mock-metadata"))
JS_DIR = Path(__file__).resolve().parent / "js"

# The venv that runs pytest also contains AWS CLI v1. AWS CLI v2 is Debian's package.
VENV_BIN = Path(sys.executable).parent
AWS_CLI_V1 = VENV_BIN / "aws"
AWS_CLI_V2 = Path("/usr/bin/aws")

PROFILE = "dev"
MFA_SERIAL = "arn:aws:iam::123456789012:mfa/dev"
REGION = "us-east-1"
ROLE_NAME = "local-credentials"
MFA_NEEDED_MESSAGE = "MFA code needed"
LONG_TERM_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYLONGTERMKEY"

# A loopback port where nothing listens, for processes that must not reach any metadata service.
UNUSED_LOOPBACK_METADATA_ENDPOINT = "http://127.0.0.1:9/"

STARTUP_TIMEOUT_SECONDS = 20
SHUTDOWN_TIMEOUT_SECONDS = 10

# The tests themselves talk only to loopback, so the caller's proxy must not apply.
for _proxy_variable in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_proxy_variable, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def can_bind_port(port: int) -> bool:
    """Return whether a new listener could take the port.

    SO_REUSEADDR lets the bind ignore connections of the stopped server that
    are still in TIME_WAIT, so only a socket that still listens makes it fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
        return True


def environment_without_aws() -> dict[str, str]:
    """Return a copy of os.environ without AWS settings, proxies or a D-Bus session bus."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("AWS_")
        and name.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "DBUS_SESSION_BUS_ADDRESS"}
    }
    environment["NO_PROXY"] = environment["no_proxy"] = "127.0.0.1,localhost"
    return environment


def http_session() -> requests.Session:
    """Return a requests session that ignores proxy and netrc settings from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session


class MetadataServer:
    """One aws-mock-metadata process in --headless mode, with its stderr in a log file."""

    def __init__(self, port: int, state_dir: Path, log_path: Path, environment: dict[str, str]) -> None:
        self.port = port
        self.state_dir = state_dir
        self.log_path = log_path
        self.environment = environment
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.http = http_session()
        # Every secret the server has handled; none may appear in its log.
        self.secrets: set[str] = set()

    def start(self) -> None:
        command = [
            str(BINARY),
            "--headless",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--profile",
            PROFILE,
            "--state-dir",
            str(self.state_dir),
        ]
        # Append, so that the log of a restarted server keeps the earlier lines.
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- start: {' '.join(command)}\n".encode())
            log_file.flush()
            self.process = subprocess.Popen(
                command,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        self.wait_until_ready()

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            exit_code = self.process.poll()
            if exit_code is not None:
                pytest.fail(f"aws-mock-metadata exited with code {exit_code} during startup\n{self.log_tail()}")
            try:
                self.http.get(f"{self.url}/manage/session", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.kill()
        pytest.fail(
            f"aws-mock-metadata did not answer GET /manage/session within {STARTUP_TIMEOUT_SECONDS} s\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> int:
        """Send SIGTERM, wait for the exit and return the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            exit_code = self.process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"aws-mock-metadata did not exit within {SHUTDOWN_TIMEOUT_SECONDS} s of SIGTERM\n{self.log_tail()}")
        self.process = None
        return exit_code

    def stop_and_check(self) -> None:
        """Stop the server and assert a clean exit that frees the port."""
        exit_code = self.stop()
        assert exit_code == 0, f"aws-mock-metadata exited with code {exit_code} after SIGTERM\n{self.log_tail()}"
        assert not is_port_listening(self.port), f"port {self.port} still accepts connections after exit"
        assert can_bind_port(self.port), f"port {self.port} cannot be bound after exit"

    def restart(self) -> None:
        self.stop_and_check()
        self.start()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, line_count: int = 40) -> str:
        lines = self.log_text().splitlines()[-line_count:]
        return f"last {len(lines)} lines of {self.log_path}:\n" + "\n".join(lines)

    def leaked_secrets(self) -> list[str]:
        """Return the handled secrets that appear in the log, shortened for the message."""
        log = self.log_text()
        return [f"{secret[:4]}…" for secret in sorted(self.secrets) if secret and secret in log]

    def count_log_lines(self, text: str) -> int:
        return sum(text in line for line in self.log_text().splitlines())

    # HTTP helpers for the management API and the IMDSv2 token.

    def get_session(self) -> requests.Response:
        return self.http.get(f"{self.url}/manage/session", timeout=5)

    def create_session(self, mfa_code: str = "271828") -> dict:
        """POST an MFA code as JSON and return the "session" object of the 200 response."""
        self.secrets.add(mfa_code)
        response = self.http.post(f"{self.url}/manage/session", json={"token": mfa_code}, timeout=30)
        assert response.status_code == 200, f"POST /manage/session: {response.status_code} {response.text}"
        session = response.json()["session"]
        self.secrets.update((session["secretKey"], session["sessionToken"]))
        return session

    def delete_session(self) -> requests.Response:
        return self.http.delete(f"{self.url}/manage/session", timeout=5)

    def put_token(self, ttl_seconds: str | None = "21600") -> requests.Response:
        headers = {} if ttl_seconds is None else {"X-aws-ec2-metadata-token-ttl-seconds": ttl_seconds}
        return self.http.put(f"{self.url}/latest/api/token", headers=headers, timeout=5)

    def fetch_token(self, ttl_seconds: str = "21600") -> str:
        response = self.put_token(ttl_seconds)
        assert response.status_code == 200, f"PUT /latest/api/token: {response.status_code} {response.text}"
        self.secrets.add(response.text)
        return response.text

    def get_metadata(self, path: str, token: str | None) -> requests.Response:
        headers = {} if token is None else {"X-aws-ec2-metadata-token": token}
        return self.http.get(f"{self.url}{path}", headers=headers, timeout=5)


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a moto server on a free loopback port and return its URL."""
    port = find_free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    environment = environment_without_aws()
    environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = UNUSED_LOOPBACK_METADATA_ENDPOINT
    environment["AWS_EC2_METADATA_DISABLED"] = "true"

    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )

    http = http_session()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"moto server exited with code {process.returncode}:\n{log_path.read_text()}")
        try:
            http.get(f"{url}/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto server did not start within {STARTUP_TIMEOUT_SECONDS} s:\n{log_path.read_text()}")
            time.sleep(0.1)

    yield url

    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def profile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write the config and credentials files of the "dev" profile that the server reads."""
    directory = tmp_path_factory.mktemp("server-aws-config")
    config = directory / "config"
    config.write_text(f"[profile {PROFILE}]\nregion = {REGION}\nmfa_serial = {MFA_SERIAL}\n")
    credentials = directory / "credentials"
    credentials.write_text(
        f"[{PROFILE}]\n"
        "aws_access_key_id = AKIAIOSFODNN7LONGTERM\n"
        f"aws_secret_access_key = {LONG_TERM_SECRET_KEY}\n"
    )
    credentials.chmod(0o600)
    return {"config": config, "credentials": credentials}


@pytest.fixture
def server(tmp_path: Path, moto_url: str, profile_files: dict[str, Path]) -> Iterator[MetadataServer]:
    """Start aws-mock-metadata on a free port, and stop it with SIGTERM after the test."""
    if not BINARY.is_file():
        pytest.fail(f"binary not found: {BINARY}. Run `cargo build` first, or set AWS_MOCK_METADATA_BIN.")

    port = find_free_port()
    home = tmp_path / "server-home"
    home.mkdir()
    state_dir = tmp_path / "server-state"
    state_dir.mkdir()

    environment = environment_without_aws()
    environment.update(
        {
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(profile_files["config"]),
            "AWS_SHARED_CREDENTIALS_FILE": str(profile_files["credentials"]),
            "AWS_ENDPOINT_URL_STS": moto_url,
            # The server must never fetch its own credentials from a metadata service.
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}/",
            "AWS_EC2_METADATA_DISABLED": "true",
            # Trace level for every crate, so that the check for leaked
            # secrets after each test covers the SDK's and hyper's logs too.
            "RUST_LOG": "trace",
            "RUST_BACKTRACE": "1",
        }
    )

    metadata_server = MetadataServer(port, state_dir, tmp_path / "server.log", environment)
    metadata_server.secrets.add(LONG_TERM_SECRET_KEY)
    metadata_server.start()
    try:
        yield metadata_server
    finally:
        if metadata_server.process is not None:
            metadata_server.stop_and_check()
    leaked = metadata_server.leaked_secrets()
    assert not leaked, f"secrets found in the trace-level server log {metadata_server.log_path}: {leaked}"


@pytest.fixture
def mfa_session(server: MetadataServer) -> dict:
    """Create an MFA session with a code that moto accepts, and return its JSON object."""
    return server.create_session()


@pytest.fixture
def client_environment(tmp_path: Path, server: MetadataServer, moto_url: str) -> dict[str, str]:
    """Return an environment where an AWS client can get credentials only from our metadata server.

    The shared config and credentials files are empty, so the default credential
    chain finds nothing before it reaches IMDS.
    """
    config_dir = tmp_path / "client-aws-config"
    config_dir.mkdir()
    (config_dir / "config").write_text("")
    (config_dir / "credentials").write_text("")

    environment = environment_without_aws()
    environment.update(
        {
            "HOME": str(config_dir),
            "AWS_CONFIG_FILE": str(config_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
            # The trailing slash is needed by AWS CLI v2 2.9.19 (Debian 12), which
            # appends "latest/api/token" to the endpoint without a separator.
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{server.url}/",
            "AWS_ENDPOINT_URL_STS": moto_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_PAGER": "",
        }
    )
    return environment


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the log tail of every server a failed test used to its report."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, MetadataServer):
                report.sections.append(("aws-mock-metadata log", value.log_tail()))
    return report
