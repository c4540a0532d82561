#!/usr/bin/env bash
# Build aws-mock-metadata.app, the macOS menu-bar bundle, from the release
# binary, Info.plist and the icons in assets/.
#
#   bundle/build-app.sh [--target TRIPLE] [--binary PATH] [--out DIR]
#
# Without --binary it runs `cargo build --release` (for --target when
# given). --out defaults to target/bundle. On macOS the bundle is signed
# ad hoc (codesign -s -) so that the Keychain and Notification Center see
# one stable identity; elsewhere signing is skipped and only the layout is
# built, which is how the tests check it on Linux.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

target=""
binary=""
out_dir="target/bundle"
while (($# > 0)); do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --out) out_dir="$2"; shift 2 ;;
        *) echo "unknown argument: $1 (expected --target, --binary or --out)" >&2; exit 2 ;;
    esac
done

if [[ -z "$binary" ]]; then
    if [[ -n "$target" ]]; then
        cargo build --release --target "$target"
        binary="target/$target/release/aws-mock-metadata"
    else
        cargo build --release
        binary="target/release/aws-mock-metadata"
    fi
fi
if [[ ! -x "$binary" ]]; then
    echo "no executable at $binary" >&2
    exit 1
fi

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
app="$out_dir/aws-mock-metadata.app"
rm -rf "$app"
mkdir -p "$app/Contents/MacOS" "$app/Contents/Resources"
cp "$binary" "$app/Contents/MacOS/aws-mock-metadata"
sed "s/@VERSION@/$version/g" Info.plist >"$app/Contents/Info.plist"
printf 'APPL????' >"$app/Contents/PkgInfo"
cp assets/tray-*.png "$app/Contents/Resources/"

if [[ "$(uname -s)" == Darwin ]]; then
    codesign --force --sign - "$app"
else
    echo "not on macOS: skipped code signing" >&2
fi
echo "$app"
