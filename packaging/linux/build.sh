#!/usr/bin/env bash
# Build Ember for Linux: two .deb packages and a portable .tar.gz, from a clone, offline but for PyPI.
#
#     packaging/linux/build.sh            # CPU build (EMBER_VARIANT=cuda for the CUDA one)
#
# Out, in build/linux/:
#   ember_<version>_amd64.deb          the app in /opt/ember, `ember` on the PATH, a desktop entry;
#                                      Depends on the system libraries Qt's window needs (issue 24)
#   ember-models_<version>_all.deb     the embedded models in /opt/ember/models (Recommended by ember)
#   ember-<version>-linux-x86_64.tar.gz  both in one folder; `touch ember/portable` keeps all data beside it
#
# Steps: the bootstrap's .venv (llama.cpp built portably, never -march=native), PyInstaller in it,
# the one-folder freeze (packaging/ember.spec), llama.cpp's duplicate .so copies made links, the
# models copied (packaging/models_tree.py), then dpkg-deb and tar. Build on the oldest distribution
# you support: the freeze needs the glibc it was built with (2.36 on Debian 12) or newer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VARIANT="${EMBER_VARIANT:-cpu}"
OUT="$ROOT/build/linux"
PY="$ROOT/.venv/bin/python"
PYINSTALLER_VERSION="6.22.3"

step() { printf '\n== %s\n' "$*"; }

step "environment"
if [ ! -x "$PY" ]; then
  QT_QPA_PLATFORM=offscreen python3 packaging/bootstrap.py install
fi
"$PY" -m pip install --disable-pip-version-check -q "pyinstaller==$PYINSTALLER_VERSION"
VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("ember-studio"))')"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
echo "Ember $VERSION, $VARIANT build, $ARCH"

step "freeze (PyInstaller, one folder)"
rm -rf "$ROOT/build/dist/ember" "$OUT"
mkdir -p "$OUT"
EMBER_VARIANT="$VARIANT" "$ROOT/.venv/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath "$ROOT/build/dist" --workpath "$ROOT/build/work" packaging/ember.spec
APP="$ROOT/build/dist/ember"

# llama-cpp-python's wheel holds libX.so, libX.so.0 and libX.so.0.x.y as three copies: keep the
# versioned file, make the other two relative links (saves 10 MB).
for versioned in "$APP"/_internal/llama_cpp/lib/*.so.*.*; do
  [ -e "$versioned" ] || continue
  name="$(basename "$versioned")"
  base="${name%%.so.*}.so"
  major="$base.${name#"$base".}"; major="${major%%.*.*}"
  for copy in "$base" "$major"; do
    if [ -f "$APP/_internal/llama_cpp/lib/$copy" ] && [ "$copy" != "$name" ]; then
      ln -sf "$name" "$APP/_internal/llama_cpp/lib/$copy"
    fi
  done
done

# Debug symbols out of the native libraries (ctranslate2's extension is 68 MB with them, 1 MB
# without), except OpenBLAS and its Fortran runtime, which a strip breaks (packaging.md, trap 3).
find "$APP/_internal" -type f \( -name '*.so' -o -name '*.so.*' \) \
  ! -name '*openblas*' ! -name 'libgfortran*' ! -name 'libquadmath*' -print0 |
  xargs -0 strip --strip-debug 2>/dev/null || true

step "models"
MODELS="$ROOT/build/models"
rm -rf "$MODELS"
"$PY" packaging/models_tree.py "$MODELS/ember/models"

step "ember_${VERSION}_${ARCH}.deb"
STAGE="$ROOT/build/deb-app"
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
  "$STAGE/usr/share/icons/hicolor/256x256/apps" "$STAGE/usr/share/doc/ember"
cp -a "$APP" "$STAGE/opt/ember"
cat > "$STAGE/usr/bin/ember" <<'LAUNCHER'
#!/bin/sh
exec /opt/ember/ember "$@"
LAUNCHER
chmod 755 "$STAGE/usr/bin/ember"
cp resources/icons/ember.png "$STAGE/usr/share/icons/hicolor/256x256/apps/ember.png"
cat > "$STAGE/usr/share/applications/ember.desktop" <<'DESKTOP'
[Desktop Entry]
Type=Application
Name=Ember
GenericName=Offline AI studio
Comment=Chat, images, speech and music with local models, offline
Exec=ember
Icon=ember
Terminal=false
Categories=Graphics;AudioVideo;Utility;
Keywords=AI;LLM;chat;diffusion;speech;music;offline;
DESKTOP
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: Ember"
  echo "Comment: The licence of every package and model shipped is in /opt/ember/_internal/resources/licenses/."
} > "$STAGE/usr/share/doc/ember/copyright"
# What Qt's xcb platform plugin needs from the system (desktop/platform_check.py lists the same), GL/EGL
# even offscreen, and glibc as new as the build machine's.
GLIBC="$(getconf GNU_LIBC_VERSION | grep -oE '[0-9]+\.[0-9]+$')"
DEPENDS="libc6 (>= $GLIBC), libstdc++6, libgl1, libegl1, libfontconfig1, libfreetype6, libdbus-1-3,
 libglib2.0-0t64 | libglib2.0-0, libx11-6, libx11-xcb1, libxkbcommon0, libxkbcommon-x11-0, libxcb1,
 libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0, libxcb-render-util0, libxcb-randr0,
 libxcb-render0, libxcb-shape0, libxcb-shm0, libxcb-sync1, libxcb-xfixes0, libxcb-xkb1, libxcb-util1"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: ember
Version: $VERSION
Architecture: $ARCH
Maintainer: Ember's developers <ember@localhost>
Installed-Size: $(du -sk "$STAGE" | cut -f1)
Depends: $(echo "$DEPENDS" | tr -d '\n')
Recommends: ember-models (= $VERSION)
Section: graphics
Priority: optional
Homepage: https://github.com/ember-studio/ember
Description: offline generative-AI studio ($VARIANT build)
 Chat and write with local language models (GGUF), make and upscale images with
 ONNX diffusion models, speak, dictate and compose music, all on this computer.
 Every output passes a content-safety filter and carries a watermark and Content
 Credentials. No account, no telemetry, no network unless you download a model.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/ember_${VERSION}_${ARCH}.deb" >/dev/null

step "ember-models_${VERSION}_all.deb"
MSTAGE="$ROOT/build/deb-models"
rm -rf "$MSTAGE"
mkdir -p "$MSTAGE/DEBIAN" "$MSTAGE/opt"
cp -a "$MODELS/ember" "$MSTAGE/opt/ember"
cat > "$MSTAGE/DEBIAN/control" <<CONTROL
Package: ember-models
Version: $VERSION
Architecture: all
Maintainer: Ember's developers <ember@localhost>
Installed-Size: $(du -sk "$MSTAGE" | cut -f1)
Enhances: ember
Section: graphics
Priority: optional
Description: Ember's embedded default models
 SmolLM2 135M Instruct and Gemma 3 270M (GGUF), the voices heart and joe, Whisper
 tiny.en, Real-ESRGAN, the safety filter's classifiers (open-nsfw, all-MiniLM-L6-v2)
 and Basic Pitch, so that Ember works offline from its first start.
CONTROL
# Models hardly compress (quantised weights): a fast zstd level, not xz's minutes for 2 %.
dpkg-deb --root-owner-group -Zzstd -z3 --build "$MSTAGE" "$OUT/ember-models_${VERSION}_all.deb" >/dev/null

step "ember-${VERSION}-linux-x86_64.tar.gz (portable)"
TSTAGE="$ROOT/build/tar"
rm -rf "$TSTAGE"
mkdir -p "$TSTAGE"
cp -a "$APP" "$TSTAGE/ember"
cp -a "$MODELS/ember/models" "$TSTAGE/ember/models"
cat > "$TSTAGE/ember/README.txt" <<'TXT'
Ember, portable build for Linux x86-64.
Run ./ember (./ember --self-test checks the install). Create an empty file named "portable" here
to keep all of Ember's data in ./data instead of your home folder (for a USB stick).
Qt's window needs some system libraries: if they are missing, Ember names them and prints the
command that installs them.
TXT
tar -C "$TSTAGE" -czf "$OUT/ember-${VERSION}-linux-x86_64.tar.gz" ember

step "sizes"
du -sh "$APP" "$MODELS/ember/models" | sed 's/^/  /'
ls -l "$OUT" | awk 'NR>1 {printf "  %-45s %6.1f MB\n", $9, $5 / 1e6}'
