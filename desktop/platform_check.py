"""Before the window: can Qt's platform plugin load here? If not, which system libraries are missing,
and the one command that installs them on this distribution.

Qt itself only says "no Qt platform plugin could be initialized. Reinstalling the application may
fix this problem", which is wrong (the missing pieces are system libraries, not Ember's) and names
nothing a person can act on. So, on Linux, Ember reads the plugin it will use (``libqxcb.so``, or
``libqwayland.so`` in a Wayland session), follows its ELF ``DT_NEEDED`` entries as the dynamic
loader would (RUNPATH with ``$ORIGIN``, ``LD_LIBRARY_PATH``, ``/etc/ld.so.conf``, the default
folders), and lists every shared library it cannot find, with its package for apt, dnf, pacman
and zypper.

Standard library only: ``packaging/bootstrap.py`` imports this file before anything is installed,
and checks the libraries the xcb plugin of Qt 6 is known to need (:data:`XCB_NEEDS`), since there
is no plugin to read yet.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import platform
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# What Qt 6's xcb platform plugin needs from the system (its own Qt libraries come with PySide6).
XCB_NEEDS = (
    "libxcb.so.1", "libX11.so.6", "libX11-xcb.so.1", "libxkbcommon.so.0", "libxkbcommon-x11.so.0",
    "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-image.so.0", "libxcb-keysyms.so.1",
    "libxcb-randr.so.0", "libxcb-render-util.so.0", "libxcb-shape.so.0", "libxcb-shm.so.0",
    "libxcb-sync.so.1", "libxcb-xfixes.so.0", "libxcb-xkb.so.1", "libxcb-render.so.0",
    "libxcb-util.so.1", "libfontconfig.so.1", "libfreetype.so.6", "libEGL.so.1", "libGL.so.1",
    "libglib-2.0.so.0", "libgthread-2.0.so.0", "libdbus-1.so.3",
)  # fmt: skip

# soname -> (apt, dnf, pacman, zypper) package
_PACKAGES: dict[str, tuple[str, str, str, str]] = {
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb", "libxcb1"),
    "libX11.so.6": ("libx11-6", "libX11", "libx11", "libX11-6"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11", "libX11-xcb1"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon", "libxkbcommon0"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11", "libxkbcommon-x11-0"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor", "libxcb-cursor0"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm", "libxcb-icccm4"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image", "libxcb-image0"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms", "libxcb-keysyms1"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil",
                                "libxcb-render-util0"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util", "libxcb-util1"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig", "libfontconfig1"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2", "libfreetype6"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd", "libEGL1"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd", "libGL1"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd", "libOpenGL0"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx", "libglvnd", "libGLX0"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libglib-2_0-0"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libgthread-2_0-0"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus", "libdbus-1-3"),
    "libSM.so.6": ("libsm6", "libSM", "libsm", "libSM6"),
    "libICE.so.6": ("libice6", "libICE", "libice", "libICE6"),
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client", "wayland", "libwayland-client0"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor", "wayland", "libwayland-cursor0"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl", "wayland", "libwayland-egl1"),
}  # fmt: skip
# The xcb extension libraries: one package each on Debian and openSUSE, all in libxcb elsewhere.
for _ext in ("randr", "render", "shape", "shm", "sync", "xfixes", "xkb", "xinput", "xinerama", "glx", "present"):
    _number = "1" if _ext in ("sync", "xkb") else "0"
    _PACKAGES.setdefault(f"libxcb-{_ext}.so.{_number}", (f"libxcb-{_ext}{_number}", "libxcb", "libxcb",
                                                          f"libxcb-{_ext}{_number}"))  # fmt: skip

MANAGERS = ("apt", "dnf", "pacman", "zypper")
_INSTALL = {
    "apt": "sudo apt-get install -y {}",
    "dnf": "sudo dnf install -y {}",
    "pacman": "sudo pacman -S --needed {}",
    "zypper": "sudo zypper install -y {}",
}
_FIND = {  # for a library whose package Ember does not know
    "apt": "apt-file search {}",
    "dnf": "dnf provides '*/{}'",
    "pacman": "pacman -F {}",
    "zypper": "zypper search --provides {}",
}
_HEADLESS = {"offscreen", "minimal", "vnc", "linuxfb", "eglfs", "minimalegl", "vkkhrdisplay"}


@dataclass(frozen=True)
class PlatformCheck:
    """What was found: the plugin Qt will use, whether it can load, and what it is missing."""

    platform: str
    plugin: str = ""
    missing: tuple[str, ...] = ()
    problem: str = ""  # a reason besides missing libraries (no display, no plugin file), or ""
    manager: str = ""  # apt, dnf, pacman, zypper, or "" when the distribution is not known
    tried: tuple[PlatformCheck, ...] = field(default=(), compare=False)  # the other plugins looked at

    @property
    def ok(self) -> bool:
        return not self.missing and not self.problem

    def packages(self) -> list[str]:
        """The packages that hold the missing libraries, for :attr:`manager` (apt's names when unknown)."""
        column = MANAGERS.index(self.manager) if self.manager in MANAGERS else 0
        found = [_PACKAGES[name][column] for name in self.missing if name in _PACKAGES]
        return list(dict.fromkeys(found))

    def message(self) -> str:
        """One plain message for the person: what is missing and the command that installs it."""
        if self.ok:
            return ""
        if self.problem and not self.missing:
            return f"Ember cannot open its window: {self.problem}"
        lines = [
            f"Ember cannot open its window: Qt's {self.platform} platform plugin needs system libraries "
            f"that are not installed: {', '.join(self.missing)}.",
        ]
        packages = self.packages()
        unknown = [name for name in self.missing if name not in _PACKAGES]
        if self.manager:
            if packages:
                lines.append("Install them with:")
                lines.append("    " + _INSTALL[self.manager].format(" ".join(packages)))
            for name in unknown:
                lines.append(f"Find the package that has {name} with:  {_FIND[self.manager].format(name)}")
        else:
            lines.append("Install the packages that hold them with your distribution's package manager:")
            for manager in MANAGERS:
                names = list(
                    dict.fromkeys(_PACKAGES[n][MANAGERS.index(manager)] for n in self.missing if n in _PACKAGES)
                )
                if names:
                    lines.append(f"    {manager:7} " + _INSTALL[manager].format(" ".join(names)))
        lines.append("Then start Ember again. (Reinstalling Ember does not help: these come with the system.)")
        return "\n".join(lines)


def package_manager(os_release: Path = Path("/etc/os-release")) -> str:
    """apt, dnf, pacman or zypper for this distribution (from ``/etc/os-release``), or "" when not known."""
    try:
        text = os_release.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"').lower()
    names = f"{fields.get('ID', '')} {fields.get('ID_LIKE', '')}".split()
    for manager, families in (
        ("apt", {"debian", "ubuntu", "linuxmint", "pop", "raspbian", "elementary"}),
        ("dnf", {"fedora", "rhel", "centos", "rocky", "almalinux", "nobara"}),
        ("pacman", {"arch", "manjaro", "endeavouros", "garuda"}),
        ("zypper", {"opensuse", "suse", "sles", "opensuse-leap", "opensuse-tumbleweed"}),
    ):
        if families.intersection(names):
            return manager
    return ""


def wanted_platforms(environ: dict[str, str] | None = None) -> list[str]:
    """The platform plugins Qt will try, in order: ``QT_QPA_PLATFORM`` when set, else wayland (in a
    Wayland session) then xcb."""
    env = os.environ if environ is None else environ
    asked = env.get("QT_QPA_PLATFORM", "").strip()
    if asked:
        return [p.split(":", 1)[0].strip() for p in asked.split(";") if p.strip()]
    if env.get("WAYLAND_DISPLAY") or env.get("XDG_SESSION_TYPE", "").lower() == "wayland":
        return ["wayland", "xcb"]
    return ["xcb"]


def plugin_folder() -> Path | None:
    """Where PySide6's platform plugins are (without importing Qt), or None when PySide6 is not installed."""
    override = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms"


def check_platform(
    environ: dict[str, str] | None = None,
    *,
    plugins: Path | None = None,
    search: Sequence[Path] | None = None,
    os_release: Path = Path("/etc/os-release"),
) -> PlatformCheck:
    """Whether the platform plugin Qt will use can load here; the first that can, or what the first lacks.

    ``search`` replaces the system's library folders (for tests: a stripped copy); ``plugins`` the
    PySide6 plugin folder. Off Linux, and for the headless plugins, everything passes.
    """
    env = dict(os.environ if environ is None else environ)
    wanted = wanted_platforms(env)
    if not sys.platform.startswith("linux") or all(p in _HEADLESS for p in wanted):
        return PlatformCheck(wanted[0] if wanted else "")
    manager = package_manager(os_release)
    folder = plugins or plugin_folder()
    tried = []
    for name in wanted:
        if name in _HEADLESS:
            return PlatformCheck(name, manager=manager, tried=tuple(tried))
        result = _check_one(name, env, folder, search, manager)
        if result.ok:
            return PlatformCheck(name, result.plugin, manager=manager, tried=tuple(tried))
        tried.append(result)
    first = tried[0]
    return PlatformCheck(first.platform, first.plugin, first.missing, first.problem, manager, tuple(tried[1:]))


def check_xcb_libraries(
    search: Sequence[Path] | None = None,
    os_release: Path = Path("/etc/os-release"),
    environ: dict[str, str] | None = None,
) -> PlatformCheck:
    """The bootstrap's check, before PySide6 is installed: are :data:`XCB_NEEDS` there, and is there a display?"""
    env = dict(os.environ if environ is None else environ)
    manager = package_manager(os_release)
    if not sys.platform.startswith("linux") or all(p in _HEADLESS for p in wanted_platforms(env)):
        return PlatformCheck("xcb", manager=manager)
    resolver = _Resolver(search)
    missing = tuple(name for name in XCB_NEEDS if resolver.find(name, ()) is None)
    problem = "" if missing or _has_display(env) else _NO_DISPLAY
    return PlatformCheck("xcb", missing=missing, problem=problem, manager=manager)


_NO_DISPLAY = (
    "there is no display to open it on (neither DISPLAY nor WAYLAND_DISPLAY is set). Start Ember from a desktop "
    "session, or set QT_QPA_PLATFORM=offscreen to run it without a screen."
)


def _has_display(env: dict[str, str]) -> bool:
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def _check_one(name: str, env: dict[str, str], folder: Path | None, search: Sequence[Path] | None,
               manager: str) -> PlatformCheck:  # fmt: skip
    if folder is None:
        return PlatformCheck(name, problem="PySide6 (Qt) is not installed. Run the install command from README.md.")
    plugin = folder / f"libq{name}.so"
    if not plugin.is_file():
        return PlatformCheck(name, str(plugin), problem=f"Qt has no '{name}' platform plugin ({plugin} is missing).")
    missing = tuple(_Resolver(search).missing(plugin))
    if not missing and search is None:
        try:  # the loader's own word, for what reading the headers cannot see (a wrong architecture)
            ctypes.CDLL(str(plugin), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        except OSError as exc:
            return PlatformCheck(name, str(plugin), problem=f"Qt's {name} platform plugin cannot load: {exc}")
    if missing:
        return PlatformCheck(name, str(plugin), missing, manager=manager)
    if name == "xcb" and not env.get("DISPLAY"):
        return PlatformCheck(name, str(plugin), problem=_NO_DISPLAY)
    if name == "wayland" and not env.get("WAYLAND_DISPLAY"):
        return PlatformCheck(name, str(plugin), problem="there is no Wayland display (WAYLAND_DISPLAY is not set).")
    return PlatformCheck(name, str(plugin), manager=manager)


class _Resolver:
    """Finds shared libraries as the dynamic loader does, from ELF headers alone (64-bit little-endian)."""

    def __init__(self, search: Sequence[Path] | None) -> None:
        self.fixed = search is not None
        if search is not None:
            self.dirs = [Path(p) for p in search]
        else:
            extra = [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
            self.dirs = extra + _system_dirs()
        self._found: dict[tuple[str, tuple[Path, ...]], Path | None] = {}

    def find(self, soname: str, runpath: tuple[Path, ...]) -> Path | None:
        key = (soname, runpath)
        if key not in self._found:
            path = next((d / soname for d in (*runpath, *self.dirs) if (d / soname).exists()), None)
            if path is None and not self.fixed and _loadable(soname):
                path = Path(soname)  # the loader finds it where this reader does not look: not missing
            self._found[key] = path
        return self._found[key]

    def missing(self, binary: Path) -> list[str]:
        """Every library ``binary`` needs, directly or through others, that cannot be found."""
        missing: list[str] = []
        seen: set[Path] = set()
        todo = [binary.resolve()]
        while todo:
            current = todo.pop()
            if current in seen or not current.is_absolute():
                continue
            seen.add(current)
            needed, runpath = _dynamic(current)
            for soname in needed:
                found = self.find(soname, runpath)
                if found is None:
                    if soname not in missing:
                        missing.append(soname)
                else:
                    todo.append(found.resolve() if found.is_absolute() else found)
        return missing


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname, mode=os.RTLD_LAZY | os.RTLD_LOCAL)
        return True
    except OSError:
        return False


def _system_dirs() -> list[Path]:
    dirs: list[Path] = []

    def read_conf(path: Path) -> None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include "):
                for included in sorted(glob.glob(line.split(None, 1)[1])):
                    read_conf(Path(included))
            elif line:
                dirs.append(Path(line))

    read_conf(Path("/etc/ld.so.conf"))
    machine = platform.machine()
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(machine, f"{machine}-linux-gnu")
    for base in ("/lib", "/usr/lib"):
        dirs += [Path(base) / triplet, Path(base + "64"), Path(base)]
    return list(dict.fromkeys(dirs))


def _dynamic(path: Path) -> tuple[list[str], tuple[Path, ...]]:
    """The DT_NEEDED names and the RUNPATH/RPATH folders ($ORIGIN expanded) of an ELF file; ([], ()) if not one."""
    try:
        data = path.read_bytes()
    except OSError:
        return [], ()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit, little-endian only
        return [], ()
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        kind, _flags, offset, vaddr, _paddr, filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize
        )
        if kind == 1:  # PT_LOAD
            loads.append((vaddr, offset, filesz))
        elif kind == 2:  # PT_DYNAMIC
            dynamic = (offset, filesz)
    if dynamic is None:
        return [], ()
    entries = []
    for at in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == 0:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == 5), None)  # DT_STRTAB, a virtual address
    if strtab is None:
        return [], ()
    base = next((off + strtab - va for va, off, size in loads if va <= strtab < va + size), None)
    if base is None:
        return [], ()

    def string(offset: int) -> str:
        end = data.index(b"\0", base + offset)
        return data[base + offset : end].decode("utf-8", "replace")

    needed = [string(v) for t, v in entries if t == 1]  # DT_NEEDED
    paths = [string(v) for t, v in entries if t in (29, 15)]  # DT_RUNPATH, DT_RPATH
    origin = str(path.parent)
    runpath = tuple(
        Path(part.replace("$ORIGIN", origin).replace("${ORIGIN}", origin))
        for entry in paths
        for part in entry.split(":")
        if part
    )
    return needed, runpath


def report(check: PlatformCheck, stream: object = None) -> int:
    """Print the message of a failed check to stderr; return the exit code (0 when it passed, 3 otherwise)."""
    if check.ok:
        return 0
    print(check.message(), file=stream or sys.stderr)
    return 3
