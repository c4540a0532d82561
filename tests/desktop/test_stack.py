"""Checks of the test desktop itself, so that a failure in the tray tests
points at the app and not at Xvfb, the bus, the tray host, the keyring or
the notification server."""

import subprocess

from conftest import NotificationMonitor, screenshot
from desktop import NOTIFICATIONS_NAME, SECRETS_NAME, WATCHER_NAME, WATCHER_PATH, Desktop

DIALOG_TITLE = "desktop-stack-check"


def test_services_own_their_bus_names(desktop: Desktop) -> None:
    assert desktop.name_has_owner(SECRETS_NAME)
    assert desktop.name_has_owner(NOTIFICATIONS_NAME)
    assert desktop.name_has_owner(WATCHER_NAME)


def test_panel_is_status_notifier_host(desktop: Desktop) -> None:
    registered = desktop.get_property(WATCHER_NAME, WATCHER_PATH, WATCHER_NAME, "IsStatusNotifierHostRegistered")
    assert registered is True


def test_zenity_entry_takes_typed_code(desktop: Desktop) -> None:
    dialog = subprocess.Popen(
        ["zenity", "--entry", "--hide-text", f"--title={DIALOG_TITLE}", "--text=Type a code", "--timeout=60"],
        env=desktop.environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        window = desktop.xdotool("search", "--sync", "--onlyvisible", "--name", DIALOG_TITLE).splitlines()[0]
        desktop.xdotool("windowfocus", "--sync", window)
        desktop.xdotool("type", "--delay", "50", "123456")
        desktop.xdotool("key", "Return")
        output, _ = dialog.communicate(timeout=20)
    finally:
        if dialog.poll() is None:
            dialog.kill()
            dialog.wait()

    assert dialog.returncode == 0
    assert output.strip() == "123456"


def test_notification_reaches_dunst(desktop: Desktop, notifications: NotificationMonitor) -> None:
    desktop.busctl(
        "call",
        NOTIFICATIONS_NAME,
        "/org/freedesktop/Notifications",
        NOTIFICATIONS_NAME,
        "Notify",
        "susssasa{sv}i",
        "desktop-stack-check",
        "0",
        "",
        "Stack check",
        "A notification sent by the desktop tests",
        "0",
        "0",
        "5000",
    )

    notifications.wait_for("Stack check")
    displayed = subprocess.run(
        ["dunstctl", "count", "displayed"], env=desktop.environment, capture_output=True, text=True, timeout=10
    )
    assert displayed.returncode == 0, displayed.stderr
    assert int(displayed.stdout.strip()) >= 1
    screenshot(desktop, "stack-notification")


def test_secret_service_stores_and_finds(desktop: Desktop) -> None:
    attributes = ["service", "desktop-stack-check", "account", "probe"]
    stored = subprocess.run(
        ["secret-tool", "store", "--label=desktop stack check", *attributes],
        env=desktop.environment,
        input="probe-secret",
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert stored.returncode == 0, stored.stderr

    looked_up = subprocess.run(
        ["secret-tool", "lookup", *attributes], env=desktop.environment, capture_output=True, text=True, timeout=10
    )
    subprocess.run(["secret-tool", "clear", *attributes], env=desktop.environment, capture_output=True, timeout=10)
    assert looked_up.returncode == 0, looked_up.stderr
    assert looked_up.stdout == "probe-secret"
