"""Fixtures that run the tray app on a headless desktop (see desktop.py)
against a moto STS server on loopback.

The moto server, the free-port helper and the environment without AWS
settings come from tests/e2e/conftest.py, so both suites start processes the
same way. Every AWS client started here gets empty config and credentials
files, no AWS_* keys, and AWS_EC2_METADATA_SERVICE_ENDPOINT pointing at the
app on loopback.

Screenshots go to target/screenshots/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop import Desktop, DesktopError, StartedProcess, stop_process, wait_until

_E2E_CONFTEST = Path(__file__).resolve().parents[1] / "e2e" / "conftest.py"
_spec = importlib.util.spec_from_file_location("e2e_conftest", _E2E_CONFTEST)
assert _spec is not None and _spec.loader is not None
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

# Reused fixtures: the moto STS server on a free loopback port, and the
# config and credentials files of the "dev" profile with its long-term keys.
moto_url = e2e.moto_url
profile_files = e2e.profile_files

BINARY = e2e.BINARY
# The tray is a shared library that the app loads from its own directory.
TRAY_LIBRARY = BINARY.parent / "libaws_mock_metadata_tray.so"
PROFILE = e2e.PROFILE
MFA_SERIAL = e2e.MFA_SERIAL
REGION = e2e.REGION
SCREENSHOT_DIR = e2e.REPO_ROOT / "target" / "screenshots"

DIALOG_TITLE = "aws-mock-metadata"
CLIENT_TIMEOUT_SECONDS = 60

# Prints the caller identity as JSON, or the error and exit code 1, so that
# each call runs in a fresh process without botocore's credential cache.
BOTO3_CALLER_IDENTITY = """
import json, sys
import boto3
try:
    identity = boto3.client("sts").get_caller_identity()
except Exception as error:
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(1)
identity.pop("ResponseMetadata", None)
print(json.dumps(identity))
"""


@pytest.fixture(scope="session")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """Start Xvfb, a private session bus, gnome-keyring, dunst and xfce4-panel."""
    stack = Desktop(tmp_path_factory.mktemp("desktop"))
    try:
        stack.start(e2e.environment_without_aws())
    except (DesktopError, OSError, subprocess.SubprocessError) as error:
        logs = "\n".join(started.log_tail() for started in stack.processes)
        stack.stop()
        pytest.fail(f"the desktop stack did not start: {error}\n{logs}")
    try:
        yield stack
    finally:
        stack.stop()


class NotificationMonitor:
    """dbus-monitor on the private bus, recording every Notify call."""

    def __init__(self, desktop: Desktop, name: str) -> None:
        self.desktop = desktop
        self.started: StartedProcess = desktop.spawn(
            name,
            [
                "dbus-monitor",
                "--address",
                desktop.bus_address,
                "type='method_call',interface='org.freedesktop.Notifications',member='Notify'",
            ],
        )
        # dbus-monitor prints the NameAcquired signal of its own connection once it listens.
        wait_until(lambda: "NameAcquired" in self.text() or "member=Notify" in self.text(), "dbus-monitor listens")

    def text(self) -> str:
        return self.started.log_path.read_text(errors="replace")

    def count(self, summary: str) -> int:
        return self.text().count(f'string "{summary}"')

    def wait_for(self, summary: str, count: int = 1, timeout: float = 20) -> None:
        try:
            wait_until(lambda: self.count(summary) >= count, f'{count} notification(s) "{summary}"', timeout)
        except DesktopError as error:
            raise AssertionError(f"{error}\nNotify calls seen:\n{self.text()[-3000:]}") from None

    def stop(self) -> None:
        stop_process(self.started.process)


@pytest.fixture
def notifications(desktop: Desktop, request: pytest.FixtureRequest) -> Iterator[NotificationMonitor]:
    monitor = NotificationMonitor(desktop, f"notifications-{request.node.name}")
    try:
        yield monitor
    finally:
        monitor.stop()


class TrayApp(e2e.MetadataServer):
    """aws-mock-metadata with its tray icon and MFA dialog on the test desktop."""

    def __init__(self, desktop: Desktop, *arguments, **keyword_arguments) -> None:
        super().__init__(*arguments, **keyword_arguments)
        self.desktop = desktop

    def start(self) -> None:
        command = [
            str(BINARY),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--profile",
            PROFILE,
            "--state-dir",
            str(self.state_dir),
            "--prompt",
            "dialog",
        ]
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

    def wait_for_log(self, text: str, timeout: float = 20) -> None:
        try:
            wait_until(lambda: text in self.log_text(), f'the app logs "{text}"', timeout)
        except DesktopError as error:
            raise AssertionError(f"{error}\n{self.log_tail()}") from None


@pytest.fixture(scope="session")
def profile_without_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Config for the "dev" profile, and a credentials file without its keys,
    so that the app can only take them from the OS keychain."""
    directory = tmp_path_factory.mktemp("app-aws-config")
    config = directory / "config"
    config.write_text(f"[profile {PROFILE}]\nregion = {REGION}\nmfa_serial = {MFA_SERIAL}\n")
    credentials = directory / "credentials"
    credentials.write_text("[other]\naws_access_key_id = AKIAIOSFODNN7OTHER00\naws_secret_access_key = not-used\n")
    credentials.chmod(0o600)
    return {"config": config, "credentials": credentials}


def app_environment(desktop: Desktop, port: int, moto_url: str, files: dict[str, Path]) -> dict[str, str]:
    environment = dict(desktop.environment)
    for name in list(environment):
        if name.upper().startswith("AWS_"):
            del environment[name]
    environment.update(
        {
            "AWS_CONFIG_FILE": str(files["config"]),
            "AWS_SHARED_CREDENTIALS_FILE": str(files["credentials"]),
            "AWS_ENDPOINT_URL_STS": moto_url,
            # The app must never fetch its own credentials from a metadata service.
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}/",
            "AWS_EC2_METADATA_DISABLED": "true",
            "RUST_LOG": "aws_mock_metadata=debug",
            "RUST_BACKTRACE": "1",
        }
    )
    return environment


@contextlib.contextmanager
def start_tray_app(
    desktop: Desktop,
    tmp_path: Path,
    moto_url: str,
    files: dict[str, Path],
    environment_changes: dict[str, str] | None = None,
) -> Iterator[TrayApp]:
    """Start the tray app on a free port, and stop it with SIGTERM, checking a clean exit, afterwards."""
    if not BINARY.is_file():
        pytest.fail(f"binary not found: {BINARY}. Run `cargo build` first, or set AWS_MOCK_METADATA_BIN.")
    if not TRAY_LIBRARY.is_file():
        pytest.fail(f"tray library not found: {TRAY_LIBRARY}. Run `cargo build` (it builds the library too) first.")
    port = e2e.find_free_port()
    state_dir = tmp_path / "app-state"
    state_dir.mkdir()
    environment = app_environment(desktop, port, moto_url, files)
    environment.update(environment_changes or {})
    app = TrayApp(desktop, port, state_dir, tmp_path / "app.log", environment)
    app.start()
    try:
        yield app
    finally:
        if app.process is not None:
            app.stop_and_check()


@pytest.fixture
def tray_app(desktop: Desktop, tmp_path: Path, moto_url: str, profile_files: dict[str, Path]) -> Iterator[TrayApp]:
    """Start the tray app with long-term keys in the credentials file."""
    with start_tray_app(desktop, tmp_path, moto_url, profile_files) as app:
        yield app


@pytest.fixture
def client_environment(desktop: Desktop, tmp_path: Path, tray_app: TrayApp, moto_url: str) -> dict[str, str]:
    """Return an environment where an AWS client can get credentials only from the tray app."""
    config_dir = tmp_path / "client-aws-config"
    config_dir.mkdir()
    (config_dir / "config").write_text("")
    (config_dir / "credentials").write_text("")

    environment = e2e.environment_without_aws()
    environment.update(
        {
            "HOME": str(config_dir),
            "AWS_CONFIG_FILE": str(config_dir / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "credentials"),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"{tray_app.url}/",
            "AWS_ENDPOINT_URL_STS": moto_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
    )
    return environment


def boto3_caller_identity(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run sts get-caller-identity with boto3 in a new process and return the result."""
    return subprocess.run(
        [sys.executable, "-c", BOTO3_CALLER_IDENTITY],
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )


def screenshot(desktop: Desktop, name: str) -> Path:
    return desktop.screenshot(SCREENSHOT_DIR / f"{name}.png")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the log tail of every app a failed test used to its report."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, e2e.MetadataServer):
                report.sections.append(("aws-mock-metadata log", value.log_tail()))
    return report
