"""The executable without the GUI libraries.

The tray (tao, tray-icon, GTK, AppIndicator) lives in the shared library
libaws_mock_metadata_tray.so next to the executable, which loads it only to
show the icon. These tests check that the executable links none of the GUI
libraries and that it runs on a machine without them. They also check that
a missing, foreign, outdated or damaged tray library, or a missing
AppIndicator, leaves it running headless with a log line on how to fix it.

No test here needs an X server: DISPLAY names a display that does not exist,
so the app tries the tray and falls back to headless.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import (
    BINARY,
    PROFILE,
    UNUSED_LOOPBACK_METADATA_ENDPOINT,
    MetadataServer,
    environment_without_aws,
    find_free_port,
)

TRAY_LIBRARY = BINARY.parent / "libaws_mock_metadata_tray.so"
TRAY_LIBRARY_ENV = "AWS_MOCK_METADATA_TRAY_LIB"
BUILD_HINT = "cargo build --release --workspace"

# Sonames of the GUI stack that only the tray library may link.
GUI_LIBRARY_PATTERN = re.compile(
    r"^lib(gtk|gdk|cairo|pango|atk|ayatana|appindicator|dbusmenu|X|xcb|xkb|wayland|epoxy|harfbuzz|fontconfig|freetype)",
    re.IGNORECASE,
)
# What a server without a desktop lacks: the GUI stack, GLib and D-Bus. The
# tray library needs more (libz, libmount, ...), but `mount` needs those too.
HIDDEN_LIBRARY_PATTERN = re.compile(rf"{GUI_LIBRARY_PATTERN.pattern}|^lib(glib|gobject|gio|gmodule|dbus)-", re.IGNORECASE)


def needed_libraries(path: Path) -> list[str]:
    """Return the DT_NEEDED entries of an ELF file, as `readelf -d` prints them."""
    output = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", output)


def resolved_libraries(path: Path) -> dict[str, Path]:
    """Return every shared library that `path` loads, directly or not, by soname, as ldd resolves them."""
    output = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
    return {name: Path(target) for name, target in re.findall(r"^\s*(\S+) => (/\S+)", output, re.MULTILINE)}


def unused_display() -> str:
    number = next(number for number in range(200, 300) if not Path(f"/tmp/.X11-unix/X{number}").exists())
    return f":{number}"


class TrayLessApp(MetadataServer):
    """aws-mock-metadata without --headless, optionally started through a wrapper command."""

    def __init__(self, *arguments, wrapper: list[str] | None = None, **keyword_arguments) -> None:
        super().__init__(*arguments, **keyword_arguments)
        self.wrapper = wrapper or []

    def start(self) -> None:
        command = [
            *self.wrapper,
            str(BINARY),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--profile",
            PROFILE,
            "--state-dir",
            str(self.state_dir),
            "--prompt",
            "none",
        ]
        with self.log_path.open("ab") as log_file:
            log_file.write(f"--- start: {shlex.join(command)}\n".encode())
            log_file.flush()
            self.process = subprocess.Popen(
                command, env=self.environment, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
            )
        self.wait_until_ready()


@contextlib.contextmanager
def start_app(
    tmp_path: Path,
    profile_files: dict[str, Path],
    environment_changes: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
) -> Iterator[TrayLessApp]:
    """Start the app on a free port with an unreachable display, and stop it with SIGTERM afterwards."""
    if not BINARY.is_file():
        pytest.fail(f"binary not found: {BINARY}. Run `cargo build` first, or set AWS_MOCK_METADATA_BIN.")
    port = find_free_port()
    state_dir = tmp_path / "app-state"
    state_dir.mkdir()

    environment = environment_without_aws()
    environment.pop("WAYLAND_DISPLAY", None)
    environment.update(
        {
            "HOME": str(tmp_path),
            "DISPLAY": unused_display(),
            "AWS_CONFIG_FILE": str(profile_files["config"]),
            "AWS_SHARED_CREDENTIALS_FILE": str(profile_files["credentials"]),
            # No test here sends a code, so STS is never called.
            "AWS_ENDPOINT_URL_STS": UNUSED_LOOPBACK_METADATA_ENDPOINT,
            # The app must never fetch its own credentials from a metadata service.
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": f"http://127.0.0.1:{port}/",
            "AWS_EC2_METADATA_DISABLED": "true",
            "RUST_LOG": "aws_mock_metadata=debug",
        }
    )
    environment.update(environment_changes or {})

    app = TrayLessApp(port, state_dir, tmp_path / "app.log", environment, wrapper=wrapper)
    app.start()
    try:
        yield app
    finally:
        if app.process is not None:
            app.stop_and_check()


def require_mount_namespace() -> None:
    """Skip the test unless a private mount namespace can be created here."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for a private mount namespace")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.strip()}")


def hiding_wrapper(paths: list[str]) -> list[str]:
    """Return a command prefix that runs its command with each of `paths` replaced by an empty file.

    The dynamic loader rejects an empty file. The mount namespace is private,
    so nothing outside it changes.
    """
    mounts = " && ".join(f"mount --bind /dev/null {shlex.quote(path)}" for path in paths)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh"]


def assert_runs_headless(app: TrayLessApp) -> None:
    log = app.log_text()
    assert "running headless" in log, app.log_tail()
    assert "panicked" not in log, app.log_tail()
    assert app.get_session().status_code == 404


def test_executable_links_no_gui_libraries() -> None:
    needed = needed_libraries(BINARY)
    assert "libc.so.6" in needed, f"readelf found no DT_NEEDED entries in {BINARY}: {needed}"
    gui = [name for name in needed if GUI_LIBRARY_PATTERN.match(name)]
    assert gui == [], f"{BINARY} links GUI libraries: {gui}"


def test_tray_library_links_gtk() -> None:
    # The positive case for the pattern above, and a check that the library is built.
    if not TRAY_LIBRARY.is_file():
        pytest.fail(f"tray library not found: {TRAY_LIBRARY}. Run `cargo build` first.")
    gui = [name for name in needed_libraries(TRAY_LIBRARY) if GUI_LIBRARY_PATTERN.match(name)]
    assert "libgtk-3.so.0" in gui, gui
    assert "libgdk-3.so.0" in gui, gui


def test_missing_tray_library_runs_headless(tmp_path: Path, profile_files: dict[str, Path]) -> None:
    missing = tmp_path / "missing" / "libaws_mock_metadata_tray.so"
    with start_app(tmp_path, profile_files, {TRAY_LIBRARY_ENV: str(missing)}) as app:
        assert_runs_headless(app)
        warnings = [line for line in app.log_text().splitlines() if "tray library not found" in line]
        assert len(warnings) == 1, app.log_tail()
        assert str(missing) in warnings[0]
        assert BUILD_HINT in warnings[0]
        assert warnings[0].endswith("; running headless")


def test_foreign_library_runs_headless(tmp_path: Path, profile_files: dict[str, Path]) -> None:
    libc = resolved_libraries(BINARY)["libc.so.6"]
    with start_app(tmp_path, profile_files, {TRAY_LIBRARY_ENV: str(libc)}) as app:
        assert_runs_headless(app)
        assert f"{libc} is not a tray library of aws-mock-metadata" in app.log_text(), app.log_tail()


def test_wrong_abi_version_runs_headless(tmp_path: Path, profile_files: dict[str, Path]) -> None:
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.fail("no C compiler (cc) to build a library with another ABI version; install build-essential")
    source = tmp_path / "old_tray.c"
    source.write_text("unsigned int amm_tray_abi_version(void) { return 999; }\n")
    library = tmp_path / "libold_tray.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)

    with start_app(tmp_path, profile_files, {TRAY_LIBRARY_ENV: str(library)}) as app:
        assert_runs_headless(app)
        mismatch = re.search(
            rf"the tray library {re.escape(str(library))} has ABI version 999, "
            r"but this executable needs version \d+; rebuild both with",
            app.log_text(),
        )
        assert mismatch, app.log_tail()


def test_runs_without_gui_libraries(tmp_path: Path, profile_files: dict[str, Path]) -> None:
    """Hide the GUI libraries, as on a server without a desktop, in a private mount namespace."""
    require_mount_namespace()
    if not TRAY_LIBRARY.is_file():
        pytest.fail(f"tray library not found: {TRAY_LIBRARY}. Run `cargo build` first.")

    executable_libraries = resolved_libraries(BINARY)
    tray_libraries = resolved_libraries(TRAY_LIBRARY)
    hidden = sorted(
        {
            str(path)
            for name, path in tray_libraries.items()
            if HIDDEN_LIBRARY_PATTERN.match(name) and name not in executable_libraries
        }
    )
    assert any("libgtk-3" in path for path in hidden), tray_libraries

    with start_app(tmp_path, profile_files, wrapper=hiding_wrapper(hidden)) as app:
        assert_runs_headless(app)
        warnings = [line for line in app.log_text().splitlines() if "cannot load the tray library" in line]
        assert len(warnings) == 1, app.log_tail()
        assert str(TRAY_LIBRARY) in warnings[0]
        assert "install GTK 3" in warnings[0]


def test_truncated_tray_library_runs_headless(tmp_path: Path, profile_files: dict[str, Path]) -> None:
    """A cut-short copy must be rejected before the dynamic loader maps it, which would end in SIGBUS."""
    if not TRAY_LIBRARY.is_file():
        pytest.fail(f"tray library not found: {TRAY_LIBRARY}. Run `cargo build` first.")
    truncated = tmp_path / "libaws_mock_metadata_tray.so"
    truncated.write_bytes(TRAY_LIBRARY.read_bytes()[:200_000])
    with start_app(tmp_path, profile_files, {TRAY_LIBRARY_ENV: str(truncated)}) as app:
        assert_runs_headless(app)
        warnings = [line for line in app.log_text().splitlines() if "is damaged" in line]
        assert len(warnings) == 1, app.log_tail()
        assert str(truncated) in warnings[0]
        assert BUILD_HINT in warnings[0]


def test_missing_app_indicator_runs_headless(tmp_path: Path, profile_files: dict[str, Path]) -> None:
    """GTK installed without AppIndicator, which the tray loads only when it creates the icon."""
    require_mount_namespace()
    if not TRAY_LIBRARY.is_file():
        pytest.fail(f"tray library not found: {TRAY_LIBRARY}. Run `cargo build` first.")

    hidden = sorted(
        str(path.resolve())
        for directory in (Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/lib"))
        if directory.is_dir()
        for pattern in ("libayatana-appindicator3.so.1*", "libappindicator3.so.1*")
        for path in directory.glob(pattern)
    )
    assert hidden, "libayatana-appindicator3-1 is not installed; scripts/test installs it"
    with start_app(tmp_path, profile_files, wrapper=hiding_wrapper(sorted(set(hidden)))) as app:
        assert_runs_headless(app)
        warnings = [line for line in app.log_text().splitlines() if "AppIndicator is not installed" in line]
        assert len(warnings) == 1, app.log_tail()
        assert "libayatana-appindicator3-1" in warnings[0]
