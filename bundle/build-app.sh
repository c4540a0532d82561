#!/usr/bin/env bash
# Build aws-mock-metadata.app, the macOS menu-bar bundle, from the release
# binary, its tray library, Info.plist and the icons in assets/.
#
#   bundle/build-app.sh [--target TRIPLE] [--binary PATH] [--tray-lib PATH] [--out DIR]
#
# Without --binary it runs `cargo build --release --workspace` (for
# --target when given), which builds the binary and the tray library.
# --tray-lib defaults to the library next to the binary: the .dylib for a
# macOS target, else the .so. It goes to Contents/Frameworks/, where the
# binary in Contents/MacOS/ looks for it. --out defaults to target/bundle.
# On macOS the library and the bundle are signed ad hoc (codesign -s -) so
# that the Keychain and Notification Center see one stable identity.
# Elsewhere signing is skipped and only the layout is built, which is how
# the tests check it on Linux.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

target=""
binary=""
tray_lib=""
out_dir="target/bundle"
while (($# > 0)); do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --tray-lib) tray_lib="$2"; shift 2 ;;
        --out) out_dir="$2"; shift 2 ;;
        *) echo "unknown argument: $1 (expected --target, --binary, --tray-lib or --out)" >&2; exit 2 ;;
    esac
done

if [[ -z "$binary" ]]; then
    if [[ -n "$target" ]]; then
        cargo build --release --workspace --target "$target"
        binary="target/$target/release/aws-mock-metadata"
    else
        cargo build --release --workspace
        binary="target/release/aws-mock-metadata"
    fi
fi
if [[ ! -x "$binary" ]]; then
    echo "no executable at $binary" >&2
    exit 1
fi
if [[ -z "$tray_lib" ]]; then
    case "${target:-$(uname -s)}" in
        *apple-darwin* | Darwin) tray_lib_name="libaws_mock_metadata_tray.dylib" ;;
        *) tray_lib_name="libaws_mock_metadata_tray.so" ;;
    esac
    tray_lib="$(dirname "$binary")/$tray_lib_name"
fi
if [[ ! -f "$tray_lib" ]]; then
    echo "no tray library at $tray_lib: build it with cargo build --release --workspace, or give --tray-lib" >&2
    exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
app="$out_dir/aws-mock-metadata.app"
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Frameworks" "$app/Contents/Resources"
cp "$binary" "$app/Contents/MacOS/aws-mock-metadata"
cp "$tray_lib" "$app/Contents/Frameworks/"
sed "s/@VERSION@/$version/g" Info.plist >"$app/Contents/Info.plist"
printf 'APPL????' >"$app/Contents/PkgInfo"
cp assets/tray-*.png "$app/Contents/Resources/"

if [[ "$(uname -s)" == Darwin ]]; then
    # Nested code is signed before the bundle that contains it.
    codesign --force --sign - "$app/Contents/Frameworks/$(basename "$tray_lib")"
    codesign --force --sign - "$app"
else
    echo "not on macOS: skipped code signing" >&2
fi
echo "$app"
