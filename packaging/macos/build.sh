#!/usr/bin/env bash
# Build Ember.app and a .dmg on macOS (Apple Silicon: the Metal build; Intel: CPU).
#
#     EMBER_VARIANT=metal packaging/macos/build.sh
#
# The same steps as packaging/linux/build.sh: the bootstrap's .venv (on Apple Silicon with
# EMBER_LLAMA_CMAKE_ARGS=-DGGML_METAL=ON), PyInstaller with packaging/ember.spec (which makes
# Ember.app with BUNDLE), the models copied into Ember.app/Contents/MacOS/models, then hdiutil.
#
# Signing and notarisation, when these are set (README "Installers"):
#   EMBER_SIGN_IDENTITY   "Developer ID Application: Name (TEAMID)"   codesign --options runtime
#   EMBER_NOTARY_PROFILE  a notarytool keychain profile (xcrun notarytool store-credentials)
# Without them the .dmg is unsigned and Gatekeeper blocks it (right-click > Open once).
# This script has not been run here: there is no Mac (README says so).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VARIANT="${EMBER_VARIANT:-metal}"
OUT="$ROOT/build/macos"
if [ ! -x .venv/bin/python ]; then
  if [ "$VARIANT" = metal ]; then export EMBER_LLAMA_CMAKE_ARGS="-DGGML_METAL=ON"; fi
  python3 packaging/bootstrap.py install
fi
.venv/bin/python -m pip install -q "pyinstaller==6.22.3"
VERSION="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("ember-studio"))')"
rm -rf build/dist "$OUT"; mkdir -p "$OUT"
EMBER_VARIANT="$VARIANT" .venv/bin/pyinstaller --noconfirm --distpath build/dist --workpath build/work packaging/ember.spec
APP="build/dist/Ember.app"
.venv/bin/python packaging/models_tree.py "$APP/Contents/MacOS/models"
if [ -n "${EMBER_SIGN_IDENTITY:-}" ]; then
  codesign --force --deep --options runtime --timestamp --sign "$EMBER_SIGN_IDENTITY" "$APP"
  codesign --verify --deep --strict "$APP"
fi
DMG="$OUT/Ember-$VERSION-$VARIANT.dmg"
hdiutil create -volname "Ember" -srcfolder "$APP" -ov -format UDZO "$DMG"
if [ -n "${EMBER_SIGN_IDENTITY:-}" ]; then
  codesign --sign "$EMBER_SIGN_IDENTITY" --timestamp "$DMG"
fi
if [ -n "${EMBER_NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$DMG" --keychain-profile "$EMBER_NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
fi
ls -l "$DMG"
