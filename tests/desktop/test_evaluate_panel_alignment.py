"""The Evaluate panel says whether an image run measured the prompt alignment, and the Models panel offers CLIP."""

from __future__ import annotations

from engines.evaluation.image import ALIGNMENT, CLIP_SCORE
from engines.evaluation.sets import SetResult


def _image_result(alignment: str, figures: dict) -> SetResult:
    row = {"prompt": "a red cat", "figures": figures, "extra": {"paths": [], "alignment": alignment}}
    return SetResult("image", "tiny", "Scenes", 2, "2026-01-01T00:00:00Z", rows=[row, dict(row, prompt="a dog")])


def test_an_image_run_shows_its_clip_score_or_says_what_to_download(qtbot, window) -> None:
    panel = window.evaluate
    window.show_panel(panel)
    assert panel.alignment.isHidden()
    panel._show(_image_result(ALIGNMENT, {"sharpness (Laplacian variance)": (1.0, 2.0, 3.0)}))
    assert not panel.alignment.isHidden()
    assert panel.alignment.text() == f"Prompt alignment: {ALIGNMENT}"  # said once for the two prompts
    assert "download 'CLIP ViT-B/32' in Models" in panel.alignment.text()
    assert f"Prompt alignment: {ALIGNMENT}" in _image_result(ALIGNMENT, {}).markdown()  # saved and exported too

    measured = "CLIP ViT-B/32 score: a proxy of prompt alignment (CLIPScore: ...)"
    panel._show(_image_result(measured, {CLIP_SCORE: (20.0, 25.0, 30.0)}))
    assert panel.alignment.text() == f"Prompt alignment: {measured}"
    names = [panel.table.item(r, 1).text() for r in range(panel.table.rowCount())]
    assert names == [CLIP_SCORE, CLIP_SCORE] and panel.figure.findText(CLIP_SCORE) >= 0

    panel._show(SetResult("text", "smol", "Explanations", 2, "now", rows=[{"prompt": "p", "figures": {}, "extra": {}}]))
    assert panel.alignment.isHidden()


def test_the_models_catalog_lists_clip_for_the_evaluate_panel(qtbot, window) -> None:
    from desktop.models_panel import KIND_NAMES, panel_name

    assert panel_name("clip") == "Evaluate" and "CLIP" in KIND_NAMES["clip"]
    models = window.models
    window.show_panel(models)
    models.refresh()
    row = models.row_texts(models.catalog_table, "clip-vit-base-patch32-int8")
    assert row["Serves"] == "Evaluate" and row["Licence"].startswith("MIT")
