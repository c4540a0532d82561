"""The tray app as a person uses it: the tray icon and its menu, the
notification and MFA dialog that an SDK request raises, and the long-term
keys in the Secret Service.

The menu is read and clicked through com.canonical.dbusmenu, as the tray host
does. The dialog is zenity, typed into with xdotool.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    BINARY,
    DIALOG_TITLE,
    MFA_SERIAL,
    PROFILE,
    NotificationMonitor,
    TrayApp,
    boto3_caller_identity,
    e2e,
    screenshot,
    start_tray_app,
)
from desktop import Desktop, DesktopError, StatusNotifierItem, descendant_pids, wait_until

MENU_LABELS_WITHOUT_SESSION = ["No session", f"Profile: {PROFILE}", "Enter MFA code…", "Clear session", "Quit"]
# A 12-hour session (the default duration) shows "11 h 59 min" right after it starts.
COUNTDOWN_PATTERN = re.compile(r"^Session expires in (\d+ h )?\d+ min$")
STS_CALL_LOG_LINE = "calling STS GetSessionToken"
KEYCHAIN_ACCESS_KEY_ID = "AKIAIOSFODNN7KEYCHAIN"
KEYCHAIN_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYKEYCHAINKEY"

# The status notifier item sits at the left end of the 32-pixel panel at the top.
TRAY_ICON_POSITION = ("16", "16")


def tray_item(desktop: Desktop, app: TrayApp) -> StatusNotifierItem:
    """Wait until the app has registered its tray item with the watcher, and return it."""
    assert app.process is not None
    try:
        return wait_until(lambda: desktop.status_notifier_item_of(app.process.pid), "the app registers a tray item")
    except DesktopError as error:
        raise AssertionError(
            f"{error}. Registered items: {desktop.registered_items()}\n{app.log_tail()}"
        ) from None


def wait_for_status_line(item: StatusNotifierItem, matches, description: str) -> str:
    """Wait until the first menu label satisfies `matches`, and return it."""
    seen: list[str] = []

    def status_line() -> str | None:
        label = item.labels()[0]
        seen.append(label)
        return label if matches(label) else None

    try:
        return wait_until(status_line, description)
    except DesktopError as error:
        raise AssertionError(f"{error}. The last status line was {seen[-1:]}") from None


def dialog_command_lines(app: TrayApp) -> list[list[str]]:
    """Return the command lines of the zenity processes that the app runs."""
    assert app.process is not None
    command_lines = []
    for pid in descendant_pids(app.process.pid):
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # The process exited.
        if Path(arguments[0].decode()).name == "zenity":
            command_lines.append([argument.decode() for argument in arguments if argument])
    return command_lines


def visible_dialogs(desktop: Desktop) -> list[str]:
    result = subprocess.run(
        ["xdotool", "search", "--onlyvisible", "--name", DIALOG_TITLE],
        env=desktop.environment,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return result.stdout.split()


def find_dialog(desktop: Desktop) -> str:
    """Wait for the visible MFA dialog and return its X window ID."""
    windows = desktop.xdotool("search", "--sync", "--onlyvisible", "--name", DIALOG_TITLE, timeout=30)
    return windows.splitlines()[0]


def type_into_dialog(desktop: Desktop, window: str, text: str) -> None:
    desktop.xdotool("windowfocus", "--sync", window)
    desktop.xdotool("type", "--delay", "50", text)
    desktop.xdotool("key", "Return")


def wait_for_dialog_to_close(desktop: Desktop, window: str) -> None:
    wait_until(lambda: window not in visible_dialogs(desktop), "the MFA dialog closes")


def visible_windows(desktop: Desktop) -> set[str]:
    return set(desktop.xdotool("search", "--onlyvisible", "--name", "").split())


def screenshot_open_menu(desktop: Desktop, name: str) -> None:
    """Open the menu by clicking the tray icon, as a person does, and take a screenshot of it."""
    windows_before = visible_windows(desktop)
    desktop.xdotool("mousemove", *TRAY_ICON_POSITION, "click", "1")
    try:
        # The menu opens as a new top-level window, and GTK gets a moment more to draw it.
        wait_until(lambda: visible_windows(desktop) - windows_before, "the tray menu opens")
        desktop.xdotool("sleep", "0.5")
        screenshot(desktop, name)
    finally:
        desktop.xdotool("key", "Escape")
        # Away from the icon, so that its tooltip does not cover later screenshots.
        desktop.xdotool("mousemove", "640", "700")


def wait_for_session(app: TrayApp) -> dict:
    """Wait until GET /manage/session returns 200, and return its "session" object."""

    def current_session() -> dict | None:
        response = app.get_session()
        if response.status_code != 200:
            return None
        return response.json()["session"]

    return wait_until(current_session, "GET /manage/session returns 200")


def test_tray_menu_without_session(desktop: Desktop, tray_app: TrayApp) -> None:
    item = tray_item(desktop, tray_app)
    # The tray library's log lines reach the app's log.
    tray_app.wait_for_log("tray icon created")
    assert "tray library loaded" in tray_app.log_text()

    assert item.labels() == MENU_LABELS_WITHOUT_SESSION
    assert item.entry("Enter MFA code…").enabled
    assert not item.entry("Clear session").enabled
    assert item.entry("Quit").enabled
    screenshot(desktop, "tray-icon")

    screenshot_open_menu(desktop, "tray-menu")


def test_sdk_request_asks_for_code(
    desktop: Desktop, tray_app: TrayApp, client_environment: dict[str, str], notifications: NotificationMonitor
) -> None:
    item = tray_item(desktop, tray_app)

    first = boto3_caller_identity(client_environment)
    assert first.returncode != 0, f"boto3 got credentials before any MFA code: {first.stdout}"

    notifications.wait_for("MFA code needed")
    assert f'"{PROFILE}"' in notifications.text()
    wait_for_status_line(item, lambda line: line == "Waiting for MFA code", "the status line waits for a code")
    window = find_dialog(desktop)
    screenshot(desktop, "mfa-dialog")
    command_lines = dialog_command_lines(tray_app)
    assert len(command_lines) == 1, command_lines
    dialog_text = next(argument for argument in command_lines[0] if argument.startswith("--text="))
    assert f'"{PROFILE}"' in dialog_text
    assert MFA_SERIAL in dialog_text

    # More SDK requests while the dialog is open raise no second dialog or notification.
    again = boto3_caller_identity(client_environment)
    assert again.returncode != 0, f"boto3 got credentials before any MFA code: {again.stdout}"
    # NOTE: 1 s is an estimate of how long a second notification or dialog would take to
    # show up. zenity maps its window in about 0.5 s on a 2-core machine.
    time.sleep(1)
    assert visible_dialogs(desktop) == [window]
    assert notifications.count("MFA code needed") == 1

    type_into_dialog(desktop, window, "123456")
    session = wait_for_session(tray_app)
    wait_for_dialog_to_close(desktop, window)

    second = boto3_caller_identity(client_environment)
    assert second.returncode == 0, f"boto3 failed after the code was entered: {second.stderr}"
    assert '"Account": "123456789012"' in second.stdout
    assert tray_app.count_log_lines(STS_CALL_LOG_LINE) == 1
    assert tray_app.get_session().json()["session"]["accessKey"] == session["accessKey"]

    status_line = wait_for_status_line(item, COUNTDOWN_PATTERN.match, "the status line shows the countdown")
    assert status_line.startswith("Session expires in 11 h ")
    assert item.entry("Clear session").enabled
    screenshot_open_menu(desktop, "tray-menu-session")


def test_short_code_is_rejected(
    desktop: Desktop, tray_app: TrayApp, notifications: NotificationMonitor
) -> None:
    item = tray_item(desktop, tray_app)

    item.click("Enter MFA code…")
    window = find_dialog(desktop)
    type_into_dialog(desktop, window, "12345")

    notifications.wait_for("MFA code rejected")
    # The dialog opens again, with the reason above the question.
    wait_for_dialog_to_close(desktop, window)
    window = find_dialog(desktop)
    screenshot(desktop, "mfa-dialog-rejected")
    assert tray_app.count_log_lines(STS_CALL_LOG_LINE) == 0
    assert tray_app.get_session().status_code == 404

    type_into_dialog(desktop, window, "654321")
    wait_for_session(tray_app)
    assert tray_app.count_log_lines(STS_CALL_LOG_LINE) == 1


def test_dialog_cancel_keeps_no_session(desktop: Desktop, tray_app: TrayApp) -> None:
    item = tray_item(desktop, tray_app)

    item.click("Enter MFA code…")
    window = find_dialog(desktop)
    desktop.xdotool("windowfocus", "--sync", window)
    desktop.xdotool("key", "Escape")

    wait_for_dialog_to_close(desktop, window)
    assert tray_app.get_session().status_code == 404
    assert tray_app.count_log_lines(STS_CALL_LOG_LINE) == 0
    assert item.labels()[0] == "No session"


def test_clear_session_from_menu(desktop: Desktop, tray_app: TrayApp) -> None:
    item = tray_item(desktop, tray_app)
    tray_app.create_session("123456")
    wait_for_status_line(item, COUNTDOWN_PATTERN.match, "the status line shows the countdown")

    item.click("Clear session")

    tray_app.wait_for_log("menu item chosen command=ClearSession")
    wait_until(lambda: tray_app.get_session().status_code == 404, "GET /manage/session returns 404")
    wait_for_status_line(item, lambda line: line == "No session", "the status line shows no session")
    assert not item.entry("Clear session").enabled


def test_quit_from_menu(desktop: Desktop, tray_app: TrayApp) -> None:
    item = tray_item(desktop, tray_app)
    process = tray_app.process
    assert process is not None

    item.click("Quit")

    try:
        exit_code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the app did not exit within 10 s of Quit\n{tray_app.log_tail()}")
    tray_app.process = None
    assert exit_code == 0, tray_app.log_tail()
    assert not e2e.is_port_listening(tray_app.port)
    wait_until(
        lambda: desktop.status_notifier_item_of(process.pid) is None, "the watcher drops the app's tray item"
    )


def test_unreachable_display_runs_headless(
    desktop: Desktop, tmp_path: Path, moto_url: str, profile_files: dict[str, Path]
) -> None:
    display_number = next(number for number in range(200, 300) if not Path(f"/tmp/.X11-unix/X{number}").exists())

    with start_tray_app(desktop, tmp_path, moto_url, profile_files, {"DISPLAY": f":{display_number}"}) as app:
        app.wait_for_log("running headless")
        session = app.create_session("123456")
        assert session["accessKey"]
        # The fallback is expected, so a panic message with a backtrace on stderr would only alarm the user.
        assert "panicked" not in app.log_text(), "the failed GTK start printed a panic message"


def test_keys_from_secret_service(
    desktop: Desktop, tmp_path: Path, moto_url: str, profile_without_keys: dict[str, Path]
) -> None:
    keys_environment = dict(desktop.environment)
    keys_environment["AWS_CONFIG_FILE"] = str(profile_without_keys["config"])
    keys_environment["AWS_SHARED_CREDENTIALS_FILE"] = str(profile_without_keys["credentials"])
    store = subprocess.run(
        [str(BINARY), "keys", "store", "--profile", PROFILE, "--access-key-id", KEYCHAIN_ACCESS_KEY_ID, "--stdin"],
        env=keys_environment,
        input=KEYCHAIN_SECRET + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert store.returncode == 0, f"keys store failed:\n{store.stdout}\n{store.stderr}"
    try:
        found = subprocess.run(
            ["secret-tool", "search", "--all", "service", "aws-mock-metadata"],
            env=desktop.environment,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert found.returncode == 0, found.stderr
        # secret-tool prints the attributes on standard error.
        assert f"attribute.username = {PROFILE}" in found.stderr
        assert KEYCHAIN_ACCESS_KEY_ID in found.stdout

        with start_tray_app(desktop, tmp_path, moto_url, profile_without_keys) as app:
            app.create_session("123456")
            log = app.log_text()
            sts_calls = [line for line in log.splitlines() if STS_CALL_LOG_LINE in line]
            assert "long-term keys found key_source=the OS keychain" in log, app.log_tail()
            assert len(sts_calls) == 1, app.log_tail()
            assert "key_source=the OS keychain" in sts_calls[0]
            assert f"access_key_id=****{KEYCHAIN_ACCESS_KEY_ID[-4:]}" in sts_calls[0]
            assert KEYCHAIN_SECRET not in log
    finally:
        subprocess.run(
            [str(BINARY), "keys", "delete", "--profile", PROFILE],
            env=keys_environment,
            capture_output=True,
            timeout=30,
        )


def test_hung_notification_server_does_not_hang_the_app(
    desktop: Desktop, tray_app: TrayApp, client_environment: dict[str, str]
) -> None:
    # A stopped dunst still owns its bus name, so Notify calls wait forever,
    # as they would on a hung notification server.
    dunst = next(started.process for started in desktop.processes if started.name == "dunst")
    dunst.send_signal(signal.SIGSTOP)
    try:
        first = boto3_caller_identity(client_environment)
        assert first.returncode != 0, f"boto3 got credentials before any MFA code: {first.stdout}"

        # The dialog still opens, and the server still answers within the
        # client's 5 s time-out while a notification is stuck.
        window = find_dialog(desktop)
        assert tray_app.get_session().status_code == 404

        tray_app.wait_for_log("the notification server did not answer within", timeout=20)
        type_into_dialog(desktop, window, "161803")
        tray_app.secrets.add("161803")
        session = wait_for_session(tray_app)
        assert session["accessKey"]
    finally:
        dunst.send_signal(signal.SIGCONT)
