"""The Models panel and the queue view, on the real Studio, library, catalog and downloader.

Downloads come from a fake Hugging Face Hub on loopback (tests/tools/fake_hub.py) serving a
tiny real GGUF file, through the Studio's download lane into a Hugging Face cache of the
test's own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QInputDialog, QLineEdit, QMessageBox

_TOOLS = str(Path(__file__).resolve().parents[1] / "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from fake_hub import FakeHub  # noqa: E402

from desktop.app import build_main_window  # noqa: E402
from desktop.main_window import MainWindow  # noqa: E402
from desktop.models_panel import (  # noqa: E402
    VERDICT_NAMES,
    ModelsPanel,
    panel_name,
)
from desktop.queue_view import DownloadRow, QueueView  # noqa: E402
from engines.errors import ModelFileError  # noqa: E402
from engines.hardware import GpuInfo, machine  # noqa: E402
from engines.jobs import EventKind  # noqa: E402
from engines.models.catalog import CatalogEntry, CatalogFile, load_catalog  # noqa: E402
from engines.models.downloads import DownloadRequest, DownloadState, human_bytes  # noqa: E402
from engines.models.embedded import SMOLLM2  # noqa: E402
from engines.models.fit import fit_of_entry, fit_of_model  # noqa: E402
from engines.models.inspect import inspect_model  # noqa: E402
from engines.paths import database_path  # noqa: E402
from engines.studio import Studio  # noqa: E402

REPO = "ember-test/tiny-gguf"
GATED_REPO = "ember-test/gated-gguf"
FILE = "tiny-chat-F32.gguf"
DOWNLOAD_TIMEOUT_MS = 30_000
GIB = 2**30


# -- fixtures -----------------------------------------------------------------------------------


def tiny_gguf(path: Path, name: str = "Tiny Test Chat", tensor_bytes: int = 2_000_000) -> Path:
    """Write a small real GGUF (a llama-shaped header with a chat template and random weights)."""
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(2048)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    weights = np.random.default_rng(7).standard_normal((tensor_bytes // 32, 8)).astype(np.float32)
    writer.add_tensor("token_embd.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a 2 MB tiny GGUF model, as the fake hub serves them."""
    return tiny_gguf(tmp_path_factory.mktemp("tiny-gguf") / FILE).read_bytes()


def fake_entry(data: bytes, *, repo: str = REPO, gated: bool = False, entry_id: str = "tiny-test-f32") -> CatalogEntry:
    """A catalog entry for the tiny model on the fake hub, with its exact size and SHA-256."""
    return CatalogEntry(
        id=entry_id,
        name="Tiny Test Chat (F32)" + (" gated" if gated else ""),
        family="tiny-test",
        kind="text",
        panel="Chat",
        format="gguf",
        repo=repo,
        revision="main",
        files=(CatalogFile(FILE, len(data), True, hashlib.sha256(data).hexdigest()),),
        licence="Apache-2.0",
        licence_name="Apache License 2.0",
        licence_url="https://www.apache.org/licenses/LICENSE-2.0",
        gated=gated,
        purpose="A tiny model served by the test's own fake hub.",
        ram_bytes=40_000_000,
        vram_bytes=500_000_000,
        quantisation="F32",
        parameters=500_000,
        backends=("cpu", "cuda"),
        context_tokens=2048,
    )


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as fake:
        yield fake


@pytest.fixture
def hf_cache(tmp_path: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Hugging Face cache of the test's own, pointed at the fake hub, with no stored token.

    huggingface_hub reads its settings when it is imported, so its constants are patched too (the
    Studio's downloads take the hub and the cache from them).
    LM Studio's and GPT4All's folders are pointed at nothing, so the person's own models stay out.
    """
    from huggingface_hub import constants, file_download
    from huggingface_hub.utils import reset_sessions

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("EMBER_LMSTUDIO_DIRS", "")
    monkeypatch.setenv("EMBER_GPT4ALL_DIRS", "")
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    # hf_hub_url builds URLs from a template made at import time, then swaps in ENDPOINT's prefix.
    template = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    reset_sessions()
    yield cache
    reset_sessions()


@pytest.fixture
def window(qtbot, hf_cache: Path, studio: Studio, smollm2_path: str) -> Iterator[MainWindow]:
    """The main window on a fresh Studio whose downloads go to the fake hub, shown offscreen."""
    w = build_main_window(studio)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()


@pytest.fixture
def models(window: MainWindow) -> ModelsPanel:
    """The window's Models panel, shown (so it has scanned)."""
    window.show_panel(window.models)
    assert window.models.installed, "the first show did not scan"
    return window.models


@pytest.fixture
def queue(window: MainWindow) -> QueueView:
    return window.queue_view


def partials(cache: Path) -> list[Path]:
    return list(cache.glob("models--*/blobs/*.incomplete"))


def wait_for_row(qtbot, queue: QueueView, download_id: int) -> DownloadRow:
    qtbot.waitUntil(lambda: queue.row(download_id) is not None, timeout=5_000)
    row = queue.row(download_id)
    assert row is not None
    return row


def finish(qtbot, window: MainWindow, download_id: int | None, action=None):  # type: ignore[no-untyped-def]
    """Run ``action`` and return the terminal event of download ``download_id`` (None: of any download)."""
    events = []

    def done(finished_id: int, event: object) -> None:
        if download_id is None or finished_id == download_id:
            events.append(event)

    window.downloads.finished.connect(done)
    try:
        if action is not None:
            action()
        qtbot.waitUntil(lambda: bool(events), timeout=DOWNLOAD_TIMEOUT_MS)
    finally:
        window.downloads.finished.disconnect(done)
    return events[0]


# -- the lists ----------------------------------------------------------------------------------


def test_the_installed_tab_lists_the_embedded_models_with_size_licence_and_fit(models: ModelsPanel) -> None:
    key = "embedded:" + SMOLLM2.id
    row = models.row_texts(models.installed_table, key)
    smol = next(m for m in models.installed if m.id == key)
    fit = fit_of_model(smol.info, machine(), [])

    assert row["Name"] == SMOLLM2.name
    assert row["Serves"] == "Chat"
    assert row["Size"] == human_bytes(Path(SMOLLM2.path()).stat().st_size)
    assert row["Licence"] == "Apache License 2.0"
    assert row["Quantisation"] == "Q4_1 · 135M"
    assert row["Source"] == "Comes with Ember"
    assert fit is not None and row["Fit"] == VERDICT_NAMES[fit.verdict]
    assert models.scan_label.text().startswith(f"{len(models.installed)} installed model")
    assert models.last_scan_s < 5

    assert models.select_installed(key)
    fields = models.detail_fields
    assert fields["Context length"].text() == "8,192 tokens"
    assert fields["Chat template"].text() == "Yes"
    assert fields["Path"].text().startswith(str(SMOLLM2.path()))
    assert "apache.org/licenses" in fields["Licence"].text()
    assert fields["Fit"].text().startswith(fit.summary[:1].upper() + fit.summary[1:])
    assert not models.remove_button.isEnabled() and "comes with Ember" in models.remove_button.toolTip()
    assert models.use_button.isVisible() and models.use_button.text() == "Use in Chat"


def test_catalog_entries_show_their_panel_licence_and_fit_verdict(models: ModelsPanel) -> None:
    catalog = load_catalog()
    assert [models.catalog_table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(len(catalog))] == [
        e.id for e in catalog
    ]
    for entry in catalog:
        row = models.row_texts(models.catalog_table, entry.id)
        assert row["Serves"] == panel_name(entry.kind)
        assert row["Fit"] == VERDICT_NAMES[fit_of_entry(entry, machine(), []).verdict]
    assert {models.row_texts(models.catalog_table, e.id)["Serves"] for e in catalog} >= {"Chat", "Images", "Speech"}

    gated = next(e for e in catalog if e.gated)
    assert models.row_texts(models.catalog_table, gated.id)["Status"] == "Token needed"
    assert models.select_entry(gated.id)
    assert models.download_button.isVisible() and "token" in models.action_hint.text()
    assert gated.licence_url in models.detail_fields["Licence"].text()

    models.kind_filter.setCurrentIndex(models.kind_filter.findData("voice"))
    shown = models.visible_keys(models.catalog_table)
    assert shown and all(next(e for e in catalog if e.id == k).kind == "voice" for k in shown)
    models.kind_filter.setCurrentIndex(0)
    models.search.setText("qwen2.5 7b")
    shown = models.visible_keys(models.catalog_table)
    assert shown and all("qwen2.5-7b" in k for k in shown)


def test_the_fit_verdict_follows_the_machines_gpu(qtbot, window: MainWindow, gguf_bytes: bytes) -> None:
    small = fake_entry(gguf_bytes)
    big = replace(fake_entry(gguf_bytes, entry_id="tiny-test-huge"), ram_bytes=10**15, vram_bytes=10**15)
    gpu = GpuInfo("Test GPU", 8 * GIB, 8 * GIB, "CUDA")
    panel = ModelsPanel(window.bridge, window.downloads, catalog=[small, big], gpu_list=[gpu])
    qtbot.addWidget(panel)
    panel.refresh()

    assert panel.row_texts(panel.catalog_table, small.id)["Fit"] == "Fits on the GPU"
    assert panel.row_texts(panel.catalog_table, big.id)["Fit"] == "Does not fit"
    fit_item = panel.catalog_table.item(1, 5)
    assert fit_item.foreground().color().name() == "#a3361b"
    assert "needs" in fit_item.toolTip()


# -- import and remove ----------------------------------------------------------------------------


def test_importing_a_real_gguf_adds_it_where_it_is_without_copying(
    monkeypatch, tmp_path: Path, models: ModelsPanel, smollm2_path: str, ember_home: Path, hf_cache: Path
) -> None:
    mine = tmp_path / "my-models" / "smol.gguf"
    mine.parent.mkdir()
    try:
        os.link(smollm2_path, mine)  # the person's own file (a second name, so it is not the embedded one)
    except OSError:
        shutil.copyfile(smollm2_path, mine)
    before = {p for p in ember_home.rglob("*.gguf") if "cache" not in p.parts}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(mine), ""))

    models.import_file()

    model = models.selected_installed()
    assert model is not None and model.path == str(mine) and model.source == "imported"
    row = models.row_texts(models.installed_table, model.id)
    assert row["Source"] == "Imported" and row["Serves"] == "Chat" and row["Size"] == human_bytes(mine.stat().st_size)
    assert models.message_text().startswith("Imported ") and str(mine) in models.message_text()
    assert {p for p in ember_home.rglob("*.gguf") if "cache" not in p.parts} == before
    assert not hf_cache.exists() or not list(hf_cache.rglob("*.gguf"))

    assert models.remove_button.isEnabled()
    assert models.remove()
    assert mine.exists(), "removing an imported model deleted the person's file"
    assert model.id not in {m.id for m in models.installed}
    assert models.message_text() == f"Ember forgot {model.name}. The file stays where it is: {mine}"


@pytest.mark.parametrize("name, content", [("broken.gguf", os.urandom(4096)), ("model.ckpt", b"\x80\x02}q\x00.")])
def test_importing_a_file_ember_cannot_use_shows_why_and_adds_nothing(
    tmp_path: Path, models: ModelsPanel, name: str, content: bytes
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        inspect_model(bad)
    listed = [m.id for m in models.installed]

    assert models.import_path(str(bad)) is None

    assert models.message_text() == f"Ember cannot use {name}: {caught.value}"
    assert models.message.property("error") is True
    assert [m.id for m in models.installed] == listed
    assert models.library.installed() == []


def test_use_in_chat_says_which_model_was_chosen(qtbot, models: ModelsPanel) -> None:
    assert models.select_installed("embedded:" + SMOLLM2.id)
    with qtbot.waitSignal(models.model_chosen) as blocker:
        qtbot.mouseClick(models.use_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["text", "embedded:" + SMOLLM2.id]


def test_use_in_images_opens_an_onnxstack_folder_in_the_images_panel(
    qtbot, window: MainWindow, models: ModelsPanel, onnxstack_sd: Path
) -> None:
    model = models.import_path(str(onnxstack_sd))
    assert model is not None and model.kind == "diffusion"
    assert models.use_button.isVisibleTo(models) and models.use_button.text() == "Use in Images"

    qtbot.mouseClick(models.use_button, Qt.MouseButton.LeftButton)

    assert window.pages.currentWidget() is window.images
    assert window.images.model_folder() == str(onnxstack_sd)
    assert not window.images.model_message.isVisibleTo(window.images)


# -- downloads ------------------------------------------------------------------------------------


def test_a_download_shows_progress_pauses_resumes_with_a_range_and_installs(
    qtbot, window: MainWindow, models: ModelsPanel, queue: QueueView, hub: FakeHub, hf_cache: Path, gguf_bytes: bytes
) -> None:
    entry = fake_entry(gguf_bytes)
    hub.add_file(REPO, FILE, gguf_bytes)
    hub.throttle_bytes_per_s = 400_000
    models.set_catalog([entry])
    assert models.select_entry(entry.id)

    qtbot.mouseClick(models.download_button, Qt.MouseButton.LeftButton)
    (item,) = window.downloads.entries()
    row = wait_for_row(qtbot, queue, item.id)
    window.show_panel(queue)
    qtbot.waitUntil(lambda: item.bytes_done >= 300_000 and item.bytes_per_s > 0, timeout=DOWNLOAD_TIMEOUT_MS)

    assert row.name_label.text() == entry.name
    assert row.state_label.text() == "Downloading"
    assert row.progress.value() > 0
    assert row.bytes_label.text().endswith(f" of {human_bytes(len(gguf_bytes))}")
    assert row.speed_label.text().endswith("/s") and row.eta_label.text().endswith("left")
    assert row.pause_button.isVisible() and row.cancel_button.isVisible() and not row.resume_button.isVisible()
    assert models.row_texts(models.catalog_table, entry.id)["Status"].startswith("Downloading")
    assert window.queue_button.text().startswith(f"Downloading {entry.name} · ")

    paused = finish(qtbot, window, item.id, lambda: qtbot.mouseClick(row.pause_button, Qt.MouseButton.LeftButton))

    assert paused.kind is EventKind.CANCELLED
    assert row.state_label.text() == "Paused" and row.resume_button.isVisible() and not row.pause_button.isVisible()
    assert window.studio.downloads.get(item.id).state is DownloadState.PAUSED
    (part,) = partials(hf_cache)
    kept = part.stat().st_size
    assert 0 < kept < len(gguf_bytes)

    hub.throttle_bytes_per_s = None
    done = finish(qtbot, window, item.id, lambda: qtbot.mouseClick(row.resume_button, Qt.MouseButton.LeftButton))

    assert done.kind is EventKind.RESULT, done.data
    assert hub.body_requests(REPO, FILE)[-1].headers["range"] == f"bytes={kept}-"
    assert hub.body_bytes_sent(REPO, FILE) < 1.2 * len(gguf_bytes)
    assert row.state_label.text() == "Done" and row.progress.value() == 1000
    assert row.bytes_label.text() == human_bytes(len(gguf_bytes))
    assert not row.cancel_button.isVisible() and not row.pause_button.isVisible()
    qtbot.waitUntil(lambda: any(m.catalog_id == entry.id for m in models.installed), timeout=5_000)
    installed = next(m for m in models.installed if m.catalog_id == entry.id)
    assert installed.source == "downloaded" and installed.name == "Tiny Test Chat"
    assert models.row_texts(models.installed_table, installed.id)["Name"] == entry.name
    assert models.row_texts(models.catalog_table, entry.id)["Status"] == "Installed"
    assert models.message_text() == f"{entry.name} is downloaded and ready in the Installed list."
    assert window.queue_button.text() == "Queue"


def test_cancel_removes_the_download_and_its_partial_file(
    qtbot, window: MainWindow, queue: QueueView, hub: FakeHub, hf_cache: Path, gguf_bytes: bytes
) -> None:
    hub.add_file(REPO, FILE, gguf_bytes)
    hub.throttle_bytes_per_s = 300_000
    download_id = window.downloads.start(DownloadRequest(REPO, (FILE,), label="Tiny"))
    row = wait_for_row(qtbot, queue, download_id)
    qtbot.waitUntil(lambda: window.downloads.entry(download_id).bytes_done > 100_000, timeout=DOWNLOAD_TIMEOUT_MS)

    event = finish(qtbot, window, download_id, lambda: qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton))

    assert event.kind is EventKind.CANCELLED
    assert queue.row(download_id) is None and queue.rows() == []
    assert not queue.empty_label.isHidden()
    assert window.studio.downloads.get(download_id).state is DownloadState.CANCELLED
    assert partials(hf_cache) == []


def test_cancelling_a_paused_download_deletes_its_part(
    qtbot, window: MainWindow, queue: QueueView, hub: FakeHub, hf_cache: Path, gguf_bytes: bytes
) -> None:
    hub.add_file(REPO, FILE, gguf_bytes)
    hub.throttle_bytes_per_s = 300_000
    download_id = window.downloads.start(DownloadRequest(REPO, (FILE,), label="Tiny"))
    row = wait_for_row(qtbot, queue, download_id)
    qtbot.waitUntil(lambda: window.downloads.entry(download_id).bytes_done > 100_000, timeout=DOWNLOAD_TIMEOUT_MS)
    finish(qtbot, window, download_id, lambda: window.downloads.pause(download_id))
    assert partials(hf_cache)

    qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)

    assert queue.row(download_id) is None  # off the list at once; the part is deleted in the background
    qtbot.waitUntil(lambda: window.studio.downloads.get(download_id).state is DownloadState.CANCELLED, timeout=10_000)
    assert partials(hf_cache) == []


def test_a_gated_download_asks_for_a_token_and_completes_with_it(
    qtbot, monkeypatch, window: MainWindow, models: ModelsPanel, queue: QueueView, hub: FakeHub, gguf_bytes: bytes
) -> None:
    entry = fake_entry(gguf_bytes, repo=GATED_REPO, gated=True, entry_id="tiny-test-gated")
    hub.add_file(GATED_REPO, FILE, gguf_bytes)
    hub.gate(GATED_REPO, "hf_reader")
    models.set_catalog([entry])
    asked: list[str] = []

    def no_token(parent, title, label, echo, *args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(label)
        assert echo == QLineEdit.EchoMode.Password
        return "", True  # the person had no token at hand

    monkeypatch.setattr(QInputDialog, "getText", no_token)
    assert models.select_entry(entry.id)
    assert "token" in models.download_button.toolTip()
    download_id = None

    def start() -> None:
        nonlocal download_id
        download_id = models.download()

    failed = finish(qtbot, window, None, start)

    assert asked and "gated" in asked[0]
    assert failed.kind is EventKind.FAILED and "is gated" in failed.data
    window.show_panel(queue)
    row = queue.row(download_id)
    assert row is not None and row.state_label.text() == "Needs a Hugging Face token"
    assert row.token_row.isVisible() and row.token_field.echoMode() == QLineEdit.EchoMode.Password
    assert not row.retry_button.isVisible() and "is gated" in row.error_label.text()
    assert models.row_texts(models.catalog_table, entry.id)["Status"] == "Needs a token"

    row.token_field.setText("hf_reader")

    done = finish(qtbot, window, download_id, lambda: qtbot.mouseClick(row.token_button, Qt.MouseButton.LeftButton))

    assert done.kind is EventKind.RESULT, done.data
    assert row.token_field.text() == "" and not row.token_row.isVisible()
    assert row.state_label.text() == "Done"
    body = hub.body_requests(GATED_REPO, FILE)[-1]
    assert any(r.headers.get("authorization") == "Bearer hf_reader" for r in hub.seen)
    assert body.method == "GET"
    assert b"hf_reader" not in database_path().read_bytes()


def test_a_download_interrupted_by_quitting_resumes_at_the_next_start(
    qtbot, ember_home: Path, hf_cache: Path, hub: FakeHub, gguf_bytes: bytes, smollm2_path: str
) -> None:
    hub.add_file(REPO, FILE, gguf_bytes)
    hub.throttle_bytes_per_s = 400_000
    before = set(threading.enumerate())
    first = Studio()
    window = build_main_window(first)
    qtbot.addWidget(window)
    window.show()
    download_id = window.downloads.start(DownloadRequest(REPO, (FILE,), label="Tiny across restarts"))
    qtbot.waitUntil(lambda: window.downloads.entry(download_id).bytes_done >= 300_000, timeout=DOWNLOAD_TIMEOUT_MS)

    window.close()  # Ember quits mid-download
    assert first.close(timeout_s=10)
    (part,) = partials(hf_cache)
    kept = part.stat().st_size
    assert 0 < kept < len(gguf_bytes)

    hub.throttle_bytes_per_s = 1_000_000
    second = Studio()
    try:
        again = build_main_window(second)
        qtbot.addWidget(again)
        again.show()
        entry = again.downloads.entry(download_id)
        assert entry is not None and entry.active, "the interrupted download was not resumed"
        row = again.queue_view.row(download_id)
        assert row is not None and row.name_label.text() == "Tiny across restarts"
        assert row.bytes_label.text().endswith(f"of {human_bytes(len(gguf_bytes))}")

        event = finish(qtbot, again, download_id)

        assert event.kind is EventKind.RESULT, event.data
        assert hub.body_requests(REPO, FILE)[-1].headers["range"] == f"bytes={kept}-"
        assert row.state_label.text() == "Done"
        assert second.downloads.get(download_id).state is DownloadState.DONE
        again.shutdown()
    finally:
        assert second.close(timeout_s=10)
    left = [t for t in threading.enumerate() if t not in before and t.name.startswith("ember")]
    assert not left, f"threads left behind: {left}"


def test_a_paused_download_stays_paused_after_a_restart_and_resumes_on_request(
    qtbot, ember_home: Path, hf_cache: Path, hub: FakeHub, gguf_bytes: bytes, smollm2_path: str
) -> None:
    hub.add_file(REPO, FILE, gguf_bytes)
    hub.throttle_bytes_per_s = 300_000
    first = Studio()
    window = build_main_window(first)
    qtbot.addWidget(window)
    download_id = window.downloads.start(DownloadRequest(REPO, (FILE,), label="Paused one"))
    qtbot.waitUntil(lambda: window.downloads.entry(download_id).bytes_done >= 100_000, timeout=DOWNLOAD_TIMEOUT_MS)
    finish(qtbot, window, download_id, lambda: window.downloads.pause(download_id))
    window.close()
    assert first.close(timeout_s=10)

    hub.throttle_bytes_per_s = None
    second = Studio()
    try:
        again = build_main_window(second)
        qtbot.addWidget(again)
        row = again.queue_view.row(download_id)
        assert row is not None and not again.downloads.entry(download_id).active
        assert row.state_label.text() == "Paused" and not row.resume_button.isHidden()

        event = finish(
            qtbot, again, download_id, lambda: qtbot.mouseClick(row.resume_button, Qt.MouseButton.LeftButton)
        )

        assert event.kind is EventKind.RESULT, event.data
        again.shutdown()
    finally:
        assert second.close(timeout_s=10)


def test_removing_a_downloaded_model_deletes_its_files_from_the_hf_cache_after_asking(
    qtbot, monkeypatch, window: MainWindow, models: ModelsPanel, hub: FakeHub, hf_cache: Path, gguf_bytes: bytes
) -> None:
    entry = fake_entry(gguf_bytes)
    hub.add_file(REPO, FILE, gguf_bytes)
    models.set_catalog([entry])
    download_id = models.download(entry)
    assert finish(qtbot, window, download_id).kind is EventKind.RESULT
    qtbot.waitUntil(lambda: any(m.catalog_id == entry.id for m in models.installed), timeout=5_000)
    model = next(m for m in models.installed if m.catalog_id == entry.id)
    assert models.select_installed(model.id) and models.remove_button.isEnabled()
    questions: list[str] = []

    def answer(button: QMessageBox.StandardButton):  # type: ignore[no-untyped-def]
        def ask(parent, title, text, *args, **kwargs):  # type: ignore[no-untyped-def]
            questions.append(text)
            return button

        return ask

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
    assert not models.remove()
    assert Path(model.path).exists()

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    assert models.remove()

    assert FILE in questions[-1] and human_bytes(len(gguf_bytes)) in questions[-1]
    assert not Path(model.path).exists() and not list(hf_cache.glob("models--*/blobs/*"))
    assert model.id not in {m.id for m in models.installed}
    assert models.message_text().startswith(f"Deleted {entry.name} from the Hugging Face cache")
    assert models.row_texts(models.catalog_table, entry.id)["Status"] == ""


def test_the_queue_lists_the_windows_other_jobs_too(
    qtbot, tmp_path: Path, window: MainWindow, queue: QueueView
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Hello there.", encoding="utf-8")

    with qtbot.waitSignal(window.verify.verify_finished, timeout=60_000):
        assert window.verify.verify_paths([str(note)])

    (row,) = queue.job_rows()
    assert row.name_label.text() == "Verify files"
    assert row.state_label.text() == "Done"
    assert row.cancel_button.isHidden() and not queue.jobs_title.isHidden()
