"""The start-up check of Qt's platform plugin: on a machine missing the xcb plugin's system libraries,
Ember names them and the command that installs them, instead of Qt's "reinstalling may fix this"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from desktop import platform_check
from desktop.platform_check import check_platform, check_xcb_libraries, package_manager, wanted_platforms

ROOT = Path(__file__).resolve().parents[2]
REMOVED = {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"}  # what a fresh Debian lacks
X11 = {"DISPLAY": ":99", "QT_QPA_PLATFORM": "xcb"}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb plugin is Linux's")


def os_release(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "os-release"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def stripped(tmp_path_factory) -> Path:
    """A copy (symbolic links) of the system's library folders without the three libraries."""
    folder = tmp_path_factory.mktemp("stripped-libs")
    for source in platform_check._system_dirs():
        if not source.is_dir():
            continue
        for entry in os.scandir(source):
            if entry.name.split(".so")[0] + ".so" in {n.split(".so")[0] + ".so" for n in REMOVED}:
                continue
            target = folder / entry.name
            if not target.exists() and not entry.is_dir():
                target.symlink_to(entry.path)
    return folder


@pytest.fixture
def debian(tmp_path: Path) -> Path:
    return os_release(tmp_path, 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')


def test_a_stripped_library_folder_names_the_missing_libraries_and_the_apt_command(
    stripped: Path, debian: Path
) -> None:
    system = check_platform(X11, search=platform_check._system_dirs(), os_release=debian)
    check = check_platform(X11, search=[stripped], os_release=debian)
    assert not check.ok and check.platform == "xcb" and check.plugin.endswith("libqxcb.so")
    assert REMOVED <= set(check.missing)
    assert set(check.missing) - REMOVED <= set(system.missing)  # nothing else, beyond what this machine lacks
    message = check.message()
    assert "libxcb-cursor.so.0" in message and "libxcb-keysyms.so.1" in message
    command = next(line.strip() for line in message.splitlines() if line.strip().startswith("sudo apt-get install"))
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"} <= set(command.split()[4:])
    assert "Reinstalling" in message and "does not help" in message  # not Qt's advice


@pytest.mark.parametrize(
    ("release", "manager", "packages"),
    [
        ("ID=fedora\n", "dnf", {"xcb-util-cursor", "xcb-util-wm", "xcb-util-keysyms"}),
        ('ID="manjaro"\nID_LIKE=arch\n', "pacman", {"xcb-util-cursor", "xcb-util-wm", "xcb-util-keysyms"}),
        ('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n', "zypper",
         {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"}),
        ("ID=ubuntu\nID_LIKE=debian\n", "apt", {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"}),
    ],
)  # fmt: skip
def test_the_command_is_the_one_of_the_distribution(stripped: Path, tmp_path: Path, release: str, manager: str,
                                                    packages: set[str]) -> None:  # fmt: skip
    path = os_release(tmp_path, release)
    assert package_manager(path) == manager
    check = check_platform(X11, search=[stripped], os_release=path)
    assert check.manager == manager and packages <= set(check.packages())
    assert f"sudo {'apt-get' if manager == 'apt' else manager} " in check.message()


def test_an_unknown_distribution_gets_the_command_of_each(stripped: Path, tmp_path: Path) -> None:
    check = check_platform(X11, search=[stripped], os_release=tmp_path / "none")
    message = check.message()
    assert check.manager == "" and all(f"sudo {m}" in message for m in ("apt-get", "dnf", "pacman", "zypper"))


def test_the_machine_itself_passes_with_a_display_and_headless_plugins_are_not_checked() -> None:
    assert check_platform({"QT_QPA_PLATFORM": "offscreen"}).ok
    assert wanted_platforms({}) == ["xcb"]
    assert wanted_platforms({"WAYLAND_DISPLAY": "wayland-0"}) == ["wayland", "xcb"]
    assert wanted_platforms({"QT_QPA_PLATFORM": "wayland;xcb"}) == ["wayland", "xcb"]
    no_display = check_platform({"QT_QPA_PLATFORM": "xcb"}, search=platform_check._system_dirs())
    assert not no_display.ok and "no display" in no_display.message()


def test_a_wayland_session_falls_back_to_xcb_when_wayland_cannot_load(stripped: Path, tmp_path: Path) -> None:
    plugins = tmp_path / "platforms"
    plugins.mkdir()
    real = platform_check.plugin_folder()
    assert real is not None
    (plugins / "libqxcb.so").symlink_to(real / "libqxcb.so")  # no wayland plugin in this folder
    env = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}
    check = check_platform(env, plugins=plugins, search=platform_check._system_dirs())
    assert check.platform == "xcb"
    assert [t.platform for t in check.tried] == ["wayland"] and "no 'wayland' platform plugin" in check.tried[0].problem


def test_the_bootstrap_check_needs_no_pyside6(stripped: Path, debian: Path) -> None:
    check = check_xcb_libraries([stripped], debian, environ={"DISPLAY": ":0"})
    assert set(check.missing) >= REMOVED and "sudo apt-get install -y" in check.message()
    assert check_xcb_libraries([stripped], debian, environ={"QT_QPA_PLATFORM": "offscreen"}).ok


def test_the_window_command_stops_with_the_message_and_a_non_zero_code(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "EMBER_HOME": str(tmp_path)}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run([sys.executable, str(ROOT / "main.py")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.startswith("Ember cannot open its window") and "no display" in done.stderr
    assert "Qt platform plugin could be initialized" not in done.stderr  # Qt never got that far


def test_the_bootstrap_checks_before_it_installs_anything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([sys.executable, str(ROOT / "packaging" / "bootstrap.py"), "start"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 3 and "Ember cannot open its window" in done.stderr
    assert "+ " not in done.stdout  # no pip, no venv, no build was started
