"""The local API from Settings: off by default, on at once, kept for the next start, a key for other computers."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from desktop.app import build_main_window
from engines.api.service import SETTING, ApiChoice


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _models(port: int, key: str | None = None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read())["object"] == "list"
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_api_is_off_until_turned_on_then_serves_the_windows_studio(qtbot, window) -> None:
    page = window.settings_page
    assert not page.api_enabled.isChecked() and page.api_status.text() == "Off." and page.api.url is None
    port = _free_port()
    page.api_port.setValue(port)
    page.api_port.editingFinished.emit()
    page.api_enabled.setChecked(True)
    assert page.api.url == f"http://127.0.0.1:{port}/v1" and page.api.url in page.api_status.text()
    assert _models(port) == 200
    assert window.studio.settings.get(SETTING) == {"enabled": True, "port": port, "network": False, "key": ""}

    page.api_enabled.setChecked(False)
    assert page.api.url is None and _refused(port) and page.api_status.text() == "Off."


def test_other_computers_need_the_key_that_settings_makes(qtbot, window) -> None:
    page = window.settings_page
    port = _free_port()
    page.api.apply(ApiChoice(enabled=True, port=port))
    page.api_network.setChecked(True)  # makes a key: nobody may serve to the network without one
    key = page.api_key.text()
    assert len(key) >= 32 and page.api.choice.network and page.api.url and "with the key" in page.api_status.text()
    assert _models(port) == 401 and _models(port, key) == 200
    old = key
    assert page.make_api_key() != old and _models(port, old) == 401 and _models(port, page.api_key.text()) == 200


def test_the_choice_is_kept_and_taken_up_at_the_next_start_and_stopped_at_the_end(qtbot, studio, window) -> None:
    port = _free_port()
    window.settings_page.api.apply(ApiChoice(enabled=True, port=port))
    window.shutdown()
    assert _refused(port)

    again = build_main_window(studio)
    qtbot.addWidget(again)
    try:
        assert _models(port) == 200  # serving before anyone opens Settings
        assert again.settings_page.api_enabled.isChecked() and again.settings_page.api_port.value() == port
    finally:
        again.shutdown()
    assert _refused(port)


def test_a_port_in_use_is_explained_and_nothing_else_changes(qtbot, window) -> None:
    page = window.settings_page
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        page.api_port.setValue(port)
        page.api_port.editingFinished.emit()
        page.api_enabled.setChecked(True)
        assert page.api.url is None and page.api_status.objectName() == "errorRow"
        assert f"127.0.0.1:{port}" in page.api_status.text() and "pick another" in page.api_status.text()
    assert page.api_enabled.isChecked()  # kept as asked: another port fixes it
    free = _free_port()
    page.api_port.setValue(free)
    page.api_port.editingFinished.emit()
    assert page.api.url == f"http://127.0.0.1:{free}/v1" and _models(free) == 200
