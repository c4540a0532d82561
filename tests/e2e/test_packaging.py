"""The macOS bundle layout and the login item, checked from Linux.

The bundle script assembles aws-mock-metadata.app around whatever binary and
tray library it is given, so its layout and Info.plist can be checked here
with the Linux build; only code signing needs macOS.
"""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path

from conftest import BINARY, REPO_ROOT, environment_without_aws

REQUIRED_BUNDLE_KEYS = {
    "CFBundleIdentifier",
    "CFBundleExecutable",
    "CFBundleName",
    "CFBundlePackageType",
    "CFBundleShortVersionString",
    "LSMinimumSystemVersion",
}


def test_bundle_layout_and_info_plist(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "bundle/build-app.sh"), "--binary", str(BINARY), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    app = tmp_path / "aws-mock-metadata.app"
    assert result.stdout.strip() == str(app)

    executable = app / "Contents/MacOS/aws-mock-metadata"
    assert executable.is_file()
    assert executable.stat().st_mode & 0o111
    # The executable looks for the tray library in ../Frameworks; a macOS
    # build puts the .dylib there, this Linux build the .so.
    tray_library = app / "Contents/Frameworks/libaws_mock_metadata_tray.so"
    assert tray_library.is_file()
    assert tray_library.read_bytes() == (BINARY.parent / tray_library.name).read_bytes()

    info = plistlib.loads((app / "Contents/Info.plist").read_bytes())
    assert REQUIRED_BUNDLE_KEYS <= info.keys()
    assert info["LSUIElement"] is True
    assert info["CFBundleExecutable"] == "aws-mock-metadata"
    assert info["CFBundlePackageType"] == "APPL"
    assert "@" not in info["CFBundleShortVersionString"]

    for state in ("valid", "expiring", "none", "waiting"):
        assert (app / f"Contents/Resources/tray-{state}-template.png").is_file()


def test_login_item_install_and_uninstall(tmp_path: Path) -> None:
    environment = environment_without_aws()
    environment["XDG_CONFIG_HOME"] = str(tmp_path)
    install = subprocess.run(
        [str(BINARY), "--profile", "dev", "login-item", "install", "--", "--listen", "127.0.0.1:45001"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    entry_path = tmp_path / "autostart/aws-mock-metadata.desktop"
    assert str(entry_path) in install.stdout

    entry = entry_path.read_text()
    assert entry.startswith("[Desktop Entry]\n")
    assert "Type=Application\n" in entry
    assert f"Exec={BINARY.resolve()} --profile dev --listen 127.0.0.1:45001\n" in entry

    uninstall = subprocess.run(
        [str(BINARY), "login-item", "uninstall"], env=environment, capture_output=True, text=True, check=True
    )
    assert "no longer starts" in uninstall.stdout
    assert not entry_path.exists()
