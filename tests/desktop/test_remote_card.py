"""Settings > Remote engines: a server added there lists its models in the Chat panel; removed, they go."""

from __future__ import annotations

from fake_openai import FakeServer

from desktop.main_window import MainWindow
from engines.remote import remote_path


def test_a_server_added_in_settings_offers_its_models_in_chat_and_removed_they_go(qtbot, window: MainWindow) -> None:
    server = FakeServer()
    server.script.models = ["qwen-7b", "llama-8b"]
    try:
        card = window.settings_page.remote_card
        card.name.setText("gpu-box")
        card.url.setText(server.url.removeprefix("http://").removesuffix("/v1"))  # as a person types it
        with qtbot.waitSignal(card.changed, timeout=10_000):
            card.connect_button.click()
        assert "Added gpu-box" in card.status.text() and card.endpoints.count() == 1
        picker = window.chat.model_picker
        labels = [picker.itemText(i) for i in range(picker.count())]
        assert "qwen-7b (gpu-box, remote)" in labels and "llama-8b (gpu-box, remote)" in labels
        assert picker.select_model_path(remote_path(server.url, "llama-8b"))
        assert picker.current_choice().resolve() == (remote_path(server.url, "llama-8b"), False)
        host = server.url.removeprefix("http://").removesuffix("/v1")
        assert f"remote server {host}: what you write is sent there" in window.chat.message_view.welcome.text()
        with qtbot.waitSignal(card.changed, timeout=5_000):
            card.remove_button.click()
        assert card.endpoints.count() == 0
        assert not any("remote" in picker.itemText(i) for i in range(picker.count()))
        assert picker.current_choice() is not None and not picker.current_choice().remote_path
        assert "runs on this computer" in window.chat.message_view.welcome.text()
    finally:
        server.close()


def test_a_server_that_does_not_answer_is_explained_and_nothing_is_kept(qtbot, window: MainWindow) -> None:
    card = window.settings_page.remote_card
    card.name.setText("nowhere")
    card.url.setText("http://127.0.0.1:9/v1")  # the discard port: nothing answers
    card.connect_button.click()
    qtbot.waitUntil(lambda: card.connect_button.isEnabled(), timeout=15_000)
    assert "nothing answers there" in card.status.text() and card.endpoints.count() == 0
    card.url.setText("ftp://box")
    card.connect_button.click()
    assert "not a server address" in card.status.text()


def test_an_image_server_offers_its_models_in_the_images_panel(qtbot, window: MainWindow) -> None:
    server = FakeServer()
    server.script.models = ["flux-schnell"]
    try:
        card = window.settings_page.remote_card
        card.name.setText("art")
        card.url.setText(server.url)
        card.kind.setCurrentIndex(card.kind.findData("image"))
        with qtbot.waitSignal(card.changed, timeout=10_000):
            card.connect_button.click()
        combo = window.images.model_combo
        assert remote_path(server.url, "flux-schnell") in [combo.itemData(i) for i in range(combo.count())]
        assert window.images.select_model(remote_path(server.url, "flux-schnell"))  # no folder to check
        picker = window.chat.model_picker
        assert not any("flux" in picker.itemText(i) for i in range(picker.count()))  # not a chat model
    finally:
        server.close()
