"""A headless Linux desktop for the tray app tests: Xvfb, a private D-Bus
session bus, gnome-keyring (Secret Service), dunst (notifications) and
xfce4-panel (a StatusNotifierItem host).

Every process is started here, kept by PID and stopped by PID. Nothing
touches the caller's display or session bus: the caller's DISPLAY and
DBUS_SESSION_BUS_ADDRESS are replaced in every child environment.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PANEL_CONFIG = Path(__file__).resolve().parent / "xfce4-panel.xml"
SCREEN_GEOMETRY = "1280x800x24"
KEYRING_PASSWORD = "desktop-test-keyring"

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
SECRETS_NAME = "org.freedesktop.secrets"
WATCHER_NAME = "org.kde.StatusNotifierWatcher"
WATCHER_PATH = "/StatusNotifierWatcher"
STATUS_NOTIFIER_ITEM_INTERFACE = "org.kde.StatusNotifierItem"
DBUSMENU_INTERFACE = "com.canonical.dbusmenu"

STARTUP_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 5

# A session bus that activates only xfconfd (xfce4-panel reads its settings
# through it). Leaving out the system's service directories keeps D-Bus
# activation from starting a second keyring, notification server or dconf.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{service_dir}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
XFCONF_SERVICE = Path("/usr/share/dbus-1/services/org.xfce.Xfconf.service")
ACTIVATABLE_NAMES = ("org.xfce.Xfconf",)


class DesktopError(RuntimeError):
    """A part of the desktop stack failed to start or to respond."""


@dataclass
class StartedProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, line_count: int = 20) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()[-line_count:]
        return f"last {len(lines)} lines of {self.log_path}:\n" + "\n".join(lines)


@dataclass
class Desktop:
    """The running desktop: its environment and the processes behind it."""

    root: Path
    environment: dict[str, str] = field(default_factory=dict)
    processes: list[StartedProcess] = field(default_factory=list)
    bus_daemon_pid: int | None = None

    @property
    def display(self) -> str:
        return self.environment["DISPLAY"]

    @property
    def bus_address(self) -> str:
        return self.environment["DBUS_SESSION_BUS_ADDRESS"]

    # Starting and stopping

    def start(self, base_environment: dict[str, str]) -> None:
        """Start every part and wait until the bus names of the keyring,
        the notification server and the tray host have owners."""
        self.environment = self._desktop_environment(base_environment)
        self._start_xvfb()
        self._start_bus()
        self._start_keyring()
        self.spawn("dunst", ["dunst"])
        self._install_panel_config()
        self.spawn("xfce4-panel", ["xfce4-panel", "--disable-wm-check"])
        for name in (SECRETS_NAME, NOTIFICATIONS_NAME, WATCHER_NAME):
            self.wait_for_bus_name(name)

    def stop(self) -> None:
        """Stop every process started here, newest first.

        Children go before their parent (the panel runs its systray plugin in
        a child process), and services that the bus activated go before the
        bus: they are not our children, because dbus-daemon double-forks
        them, so their PIDs come from the bus itself.
        """
        activated_pids = self._activated_service_pids()
        for started in reversed(self.processes):
            if started.process.pid == self.bus_daemon_pid:
                for pid in activated_pids:
                    terminate_pid(pid)
            for pid in reversed(descendant_pids(started.process.pid)):
                terminate_pid(pid)
            stop_process(started.process)
        self.processes.clear()

    def _activated_service_pids(self) -> list[int]:
        if self.bus_daemon_pid is None or "DBUS_SESSION_BUS_ADDRESS" not in self.environment:
            return []
        pids = []
        for name in ACTIVATABLE_NAMES:
            try:
                pids.append(self.connection_pid(name))
            except DesktopError:
                continue  # The name has no owner.
        return pids

    def spawn(self, name: str, command: list[str], **popen_arguments) -> StartedProcess:
        """Start a process with the desktop environment and its output in NAME.log."""
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                command,
                env=popen_arguments.pop("env", self.environment),
                stdin=popen_arguments.pop("stdin", subprocess.DEVNULL),
                stdout=popen_arguments.pop("stdout", log_file),
                stderr=log_file,
                **popen_arguments,
            )
        started = StartedProcess(name, process, log_path)
        self.processes.append(started)
        return started

    def _desktop_environment(self, base_environment: dict[str, str]) -> dict[str, str]:
        home = self.root / "home"
        directories = {
            "HOME": home,
            "XDG_CONFIG_HOME": home / ".config",
            "XDG_DATA_HOME": home / ".local/share",
            "XDG_CACHE_HOME": home / ".cache",
            "XDG_STATE_HOME": home / ".local/state",
            "XDG_RUNTIME_DIR": self.root / "runtime",
        }
        for directory in directories.values():
            directory.mkdir(parents=True, exist_ok=True)
        directories["XDG_RUNTIME_DIR"].chmod(0o700)

        environment = {
            name: value
            for name, value in base_environment.items()
            if name not in {"DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "XAUTHORITY"}
        }
        environment.update({name: str(path) for name, path in directories.items()})
        environment.update(
            {
                # No accessibility bus, and GSettings in memory instead of dconf.
                "NO_AT_BRIDGE": "1",
                "GSETTINGS_BACKEND": "memory",
                "GTK_A11Y": "none",
                # Only our notification server, keyring and tray host take part.
                "XDG_CURRENT_DESKTOP": "XFCE",
            }
        )
        return environment

    def _start_xvfb(self) -> None:
        # -displayfd makes Xvfb pick a free display number and write it to the pipe when ready.
        read_end, write_end = os.pipe()
        try:
            self.spawn(
                "xvfb",
                ["Xvfb", "-displayfd", str(write_end), "-screen", "0", SCREEN_GEOMETRY, "-nolisten", "tcp"],
                pass_fds=(write_end,),
            )
            os.close(write_end)
            write_end = -1
            display_number = read_line(read_end, STARTUP_TIMEOUT_SECONDS, "Xvfb display number")
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
        self.environment["DISPLAY"] = f":{display_number}"
        wait_until(lambda: run_quietly(["xdpyinfo"], self.environment), "Xvfb accepts connections")

    def _start_bus(self) -> None:
        service_dir = self.root / "dbus-services"
        service_dir.mkdir()
        if XFCONF_SERVICE.is_file():
            shutil.copy(XFCONF_SERVICE, service_dir)
        socket_path = self.root / "bus"
        config_path = self.root / "bus.conf"
        config_path.write_text(BUS_CONFIG.format(socket=socket_path, service_dir=service_dir))

        bus = self.spawn(
            "dbus-daemon",
            ["dbus-daemon", f"--config-file={config_path}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
        )
        self.bus_daemon_pid = bus.process.pid
        assert bus.process.stdout is not None
        address = read_line(bus.process.stdout.fileno(), STARTUP_TIMEOUT_SECONDS, "dbus-daemon address")
        self.environment["DBUS_SESSION_BUS_ADDRESS"] = address

    def _start_keyring(self) -> None:
        # --unlock reads the password of the login keyring from standard
        # input, and creates that keyring, unlocked, when it does not exist.
        keyring = self.spawn(
            "gnome-keyring",
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
        )
        assert keyring.process.stdin is not None
        keyring.process.stdin.write(KEYRING_PASSWORD.encode())
        keyring.process.stdin.close()

    def _install_panel_config(self) -> None:
        config_dir = Path(self.environment["XDG_CONFIG_HOME"]) / "xfce4/xfconf/xfce-perchannel-xml"
        config_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(PANEL_CONFIG, config_dir / "xfce4-panel.xml")

    # D-Bus

    def busctl(self, *arguments: str, timeout: float = 10) -> dict | None:
        """Run busctl on the private bus and return its JSON output (None when it prints nothing)."""
        result = subprocess.run(
            ["busctl", f"--address={self.bus_address}", "--json=short", "--", *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise DesktopError(f"busctl {' '.join(arguments)} failed: {result.stderr.strip()}")
        output = result.stdout.strip()
        return json.loads(output) if output else None

    def name_has_owner(self, name: str) -> bool:
        reply = self.busctl(
            "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner", "s", name
        )
        return bool(reply and reply["data"][0])

    def wait_for_bus_name(self, name: str) -> None:
        def owned() -> bool:
            for started in self.processes:
                if started.process.poll() is not None:
                    raise DesktopError(
                        f"{started.name} exited with code {started.process.returncode} "
                        f"while waiting for {name}\n{started.log_tail()}"
                    )
            return self.name_has_owner(name)

        wait_until(owned, f"{name} has an owner on the private bus")

    def get_property(self, service: str, path: str, interface: str, name: str):
        reply = self.busctl("get-property", service, path, interface, name)
        assert reply is not None
        return reply["data"]

    def registered_items(self) -> list[str]:
        """Return the watcher's RegisteredStatusNotifierItems: "BUS-NAME/OBJECT/PATH" strings."""
        return self.get_property(WATCHER_NAME, WATCHER_PATH, WATCHER_NAME, "RegisteredStatusNotifierItems")

    def connection_pid(self, bus_name: str) -> int:
        reply = self.busctl(
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetConnectionUnixProcessID",
            "s",
            bus_name,
        )
        assert reply is not None
        return int(reply["data"][0])

    def status_notifier_item_of(self, pid: int) -> StatusNotifierItem | None:
        """Return the tray item that process `pid` registered, if any."""
        for registered in self.registered_items():
            service, slash, path = registered.partition("/")
            try:
                owner_pid = self.connection_pid(service)
            except DesktopError:
                continue  # The item's connection closed after the watcher listed it.
            if owner_pid == pid:
                return StatusNotifierItem(self, service, slash + path)
        return None

    # X11

    def xdotool(self, *arguments: str, timeout: float = 20) -> str:
        result = subprocess.run(
            ["xdotool", *arguments], env=self.environment, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise DesktopError(f"xdotool {' '.join(arguments)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["import", "-window", "root", str(path)], env=self.environment, check=True, capture_output=True, timeout=20
        )
        return path


@dataclass
class MenuEntry:
    """One item of a com.canonical.dbusmenu menu."""

    id: int
    label: str
    enabled: bool
    kind: str


class StatusNotifierItem:
    """A registered tray item and its exported dbusmenu."""

    def __init__(self, desktop: Desktop, service: str, path: str) -> None:
        self.desktop = desktop
        self.service = service
        self.path = path

    def get_property(self, name: str):
        return self.desktop.get_property(self.service, self.path, STATUS_NOTIFIER_ITEM_INTERFACE, name)

    @property
    def menu_path(self) -> str:
        return self.get_property("Menu")

    def menu_entries(self) -> list[MenuEntry]:
        """Return the top-level entries of the menu, separators included, from GetLayout."""
        reply = self.desktop.busctl(
            "call", self.service, self.menu_path, DBUSMENU_INTERFACE, "GetLayout", "iias", "0", "-1", "0"
        )
        assert reply is not None
        _revision, (_root_id, _root_properties, children) = reply["data"]
        entries = []
        for child in children:
            item_id, properties, _grandchildren = child["data"]
            entries.append(
                MenuEntry(
                    id=item_id,
                    label=properties.get("label", {}).get("data", ""),
                    enabled=properties.get("enabled", {}).get("data", True),
                    kind=properties.get("type", {}).get("data", "standard"),
                )
            )
        return entries

    def labels(self) -> list[str]:
        return [entry.label for entry in self.menu_entries() if entry.kind != "separator"]

    def entry(self, label: str) -> MenuEntry:
        entries = self.menu_entries()
        for entry in entries:
            if entry.label == label:
                return entry
        raise AssertionError(f'no menu item "{label}"; the menu has {[e.label for e in entries]}')

    def click(self, label: str) -> None:
        """Send the dbusmenu "clicked" event for the item with this label, as a tray host does."""
        entry = self.entry(label)
        self.desktop.busctl(
            "call",
            self.service,
            self.menu_path,
            DBUSMENU_INTERFACE,
            "Event",
            "isvu",
            str(entry.id),
            "clicked",
            "i",
            "0",
            "0",
        )


def read_line(fd: int, timeout: float, description: str) -> str:
    """Read one line from a pipe, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DesktopError(f"no {description} within {timeout} s")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise DesktopError(f"the pipe closed before the {description} arrived")
        data += chunk
    return data.split(b"\n", 1)[0].decode().strip()


def wait_until(condition, description: str, timeout: float = STARTUP_TIMEOUT_SECONDS, interval: float = 0.1):
    """Poll `condition` until it returns a true value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DesktopError(f"timed out after {timeout} s waiting until {description}")
        time.sleep(interval)


def run_quietly(command: list[str], environment: dict[str, str]) -> bool:
    return subprocess.run(command, env=environment, capture_output=True, timeout=10).returncode == 0


def descendant_pids(pid: int) -> list[int]:
    """Return the PIDs of the children of `pid` and of their children, parents first, from /proc.

    Each thread lists the children it started, so every thread of `pid` is read.
    """
    children = []
    for children_file in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.extend(int(child) for child in children_file.read_text().split())
        except OSError:
            continue  # The thread exited.
    descendants = []
    for child in children:
        descendants.append(child)
        descendants.extend(descendant_pids(child))
    return descendants


def terminate_pid(pid: int) -> None:
    """Send SIGTERM to a process that is not our child, and SIGKILL when it outlives the time limit."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if not is_running(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def is_running(pid: int) -> bool:
    """Return whether `pid` exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
