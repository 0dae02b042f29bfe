"""The Music panel in the real window: compose and listen, save the MIDI, re-run the same piece; MusicGen with a
growing waveform; a tune turned into notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop.audio_player import Playback, Pull
from desktop.main_window import MainWindow
from desktop.music_panel import MusicPanel
from engines.jobs import EventKind

pytest.importorskip("tinysoundfont")
TIMEOUT_MS = 120_000


class FakeDevice:
    """A sound output that plays only when the test pulls from it."""

    def __init__(self) -> None:
        self.rate = 0
        self.pull: Pull | None = None
        self.starts = 0

    def start(self, sample_rate: int, pull: Pull) -> None:
        self.rate, self.pull = sample_rate, pull
        self.starts += 1

    def stop(self) -> None:
        self.pull = None


@pytest.fixture
def music(window: MainWindow) -> MusicPanel:
    window.show_panel(window.music)
    window.music.playback = Playback(FakeDevice())
    return window.music


def finish(music: MusicPanel, qtbot) -> None:
    op = music.generate()
    assert op is not None
    qtbot.waitUntil(lambda: not music.busy(), timeout=TIMEOUT_MS)
    assert op.job.wait(1).kind is EventKind.RESULT, op.job.wait(1).data


def test_compose_shows_the_piece_and_its_midi_and_rerun_makes_it_again(
    music: MusicPanel, qtbot, tmp_path: Path
) -> None:
    from engines.music.compose import parse_midi

    assert music.is_composer() and music.generate_button.text() == "Compose"
    assert not music.rerun_button.isEnabled() and not music.save_midi_button.isEnabled()
    music.key.setCurrentText("D minor")
    music.style.setCurrentIndex(music.style.findData("ballad"))
    music.bars.setValue(4)
    music.seed.set_seed(21)
    finish(music, qtbot)
    first = music.result
    assert "D minor" in music.status.text() and "seed 21" in music.status.text()
    assert len(music.player.waveform.peaks()) > 0 and music.player.play_button.isEnabled()
    assert music.save_midi_button.isEnabled() and music.rerun_button.isEnabled()
    music.save_midi(str(tmp_path / "piece.mid"))
    qtbot.waitUntil(lambda: (tmp_path / "piece.mid").exists(), timeout=10_000)
    assert parse_midi((tmp_path / "piece.mid").read_bytes()).key == "D minor"
    music.seed.set_seed(None)  # Re-run takes the piece's own seed, not the box's
    op = music.rerun()
    assert op is not None
    qtbot.waitUntil(lambda: not music.busy(), timeout=TIMEOUT_MS)
    again = music.result
    assert again.delivered.record.provenance.seed == 21
    assert Path(again.midi_path).read_bytes() == Path(first.midi_path).read_bytes()


def test_a_bad_setting_is_said_in_the_panel(music: MusicPanel, qtbot) -> None:
    music.key.setCurrentText("Q major")  # the composer reads the key: the job fails with its reason
    op = music.generate()
    assert op is not None
    qtbot.waitUntil(lambda: not music.busy(), timeout=TIMEOUT_MS)
    assert op.job.wait(1).kind is EventKind.FAILED
    assert "key" in music.message_text().lower()
    assert music.result is None and not music.save_button.isEnabled()


def test_musicgen_previews_grow_the_waveform_then_the_whole_piece_replaces_them(
    music: MusicPanel, qtbot, tiny_musicgen_onnx: Path
) -> None:
    assert music.select_model(str(tiny_musicgen_onnx))
    assert not music.is_composer() and music.generate_button.text() == "Generate"
    assert music.generate() is None and "Describe" in music.message_text()
    music.prompt.setPlainText("warm synth pads, slow")
    music.seconds.setValue(6.0)
    music.seed.set_seed(4)
    sizes: list[int] = []
    music.player.waveform.set_clip = _recording(music.player.waveform.set_clip, sizes)
    finish(music, qtbot)
    audio = music.result.delivered.output
    assert abs(len(audio.samples) / audio.sample_rate - 6.0) < 0.1
    assert len(sizes) >= 3 and sizes[-1] == len(audio.samples)  # previews, then the whole piece
    assert not music.save_midi_button.isEnabled() and music.save_button.isEnabled()


def test_a_tune_becomes_midi(music: MusicPanel, qtbot, tmp_path: Path) -> None:
    import soundfile

    rate = 22_050
    t = np.arange(int(0.4 * rate)) / rate
    tune = np.concatenate([0.4 * np.sin(2 * np.pi * 440.0 * 2 ** (n / 12) * t) for n in (0, 4, 7, 12)])
    soundfile.write(tmp_path / "tune.wav", tune.astype(np.float32), rate)
    music.tune_to_midi(str(tmp_path / "tune.wav"), str(tmp_path / "tune.mid"))
    qtbot.waitUntil(lambda: "notes, in" in music.status.text(), timeout=60_000)
    assert (tmp_path / "tune.mid").exists() and music.status.text().startswith("4 notes")


def _recording(set_clip, sizes: list[int]):
    def recorded(samples, sample_rate, expected_s=0.0):
        sizes.append(len(samples))
        return set_clip(samples, sample_rate, expected_s)

    return recorded
