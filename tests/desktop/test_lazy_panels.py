"""Panels other than Chat and Models are made when first opened, and then work as if made at the start."""

from __future__ import annotations

from desktop.main_window import LAZY_PANELS, MainWindow


def test_only_chat_and_models_are_made_at_start_and_a_panel_is_made_when_opened(window: MainWindow) -> None:
    names = [window.navigation.item(row).text() for row in range(window.navigation.count())]
    assert names == ["Chat", "Images", "Speech", "Music", "Library", "Models", "Verify", "Evaluate", "Queue",
                     "Settings"]  # fmt: skip
    assert not window._made  # nothing lazy was made to show the window
    window.navigation.setCurrentRow(names.index("Music"))
    assert set(window._made) == {"Music"}
    assert window.pages.currentWidget() is window.music and window.pages.indexOf(window.music) == 3
    assert window.pages.count() == len(names)


def test_asking_for_a_panel_makes_it_in_its_place_without_switching_to_it(window: MainWindow) -> None:
    shown = window.pages.currentWidget()
    images = window.images
    assert window.pages.currentWidget() is shown and window.pages.indexOf(images) == 1
    assert window.images is images  # made once
    for name in LAZY_PANELS:
        window.panel(name)
    assert set(window._made) == set(LAZY_PANELS)
    window.show_settings()
    assert window.pages.currentWidget() is window.settings_page
