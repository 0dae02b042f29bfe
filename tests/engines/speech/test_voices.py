"""Voices: finding them, reading text for piper voices without espeak, and clear errors for bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engines.errors import ModelFileError
from engines.speech.voices import (
    PIPER,
    embedded_voices,
    g2p,
    misaki_to_espeak,
    piper_ids,
    read_piper_config,
    resolve_voice,
    split_sentences,
)

VARIED = (
    "Hello there! The quick brown fox jumps over the lazy dog. Judge the church's measure, now. "
    "My boy is going to the bird feeder; the water and butter are thought of as rather costly? "
    "On the 3rd of March 2024, 1,250 people paid $9.99 each — at 7:30 pm."
)


def test_both_embedded_voices_are_installed_and_work_offline() -> None:
    voices = {v.id: v for v in embedded_voices()}
    assert set(voices) == {"heart", "joe"}
    assert (voices["heart"].sample_rate_hz, voices["joe"].sample_rate_hz) == (24_000, 22_050)
    for voice in voices.values():
        assert Path(voice.path).is_file()
    assert Path(voices["joe"].config).is_file()


def test_misaki_letters_are_written_out_as_espeak_writes_them() -> None:
    assert misaki_to_espeak("ðə lˈAzi dˈɔɡ") == "ðə lˈeɪzi dˈɔːɡ"
    assert misaki_to_espeak("mˈI bˈY nˈW ɡˈO") == "mˈaɪ bˈɔɪ nˈaʊ ɡˈoʊ"
    assert misaki_to_espeak("ʤˈʌʤ ʧˈɜɹʧ") == "dʒˈʌdʒ tʃˈɜːtʃ"
    assert misaki_to_espeak("bˈʌTəɹ") == "bˈʌɾɚ"
    assert misaki_to_espeak("ʃˈi") == "ʃˈiː"  # stressed: long; "easy" keeps its short end
    assert misaki_to_espeak("ˈizi") == "ˈiːzi"


def test_every_symbol_the_g2p_writes_for_english_is_known_to_the_piper_voice() -> None:
    joe = next(v for v in embedded_voices() if v.id == "joe")
    id_map = read_piper_config(Path(joe.path))["phoneme_id_map"]
    for sentence in split_sentences(VARIED):
        espeak = misaki_to_espeak(g2p()(sentence))
        unknown = {c for c in espeak if c not in id_map}
        assert not unknown, f"{sentence!r} -> {espeak!r} has symbols the voice lacks: {unknown}"


def test_piper_ids_start_end_and_pad_between_phonemes() -> None:
    id_map = {"^": [1], "$": [2], "_": [0], "a": [7], "b": [8]}
    assert piper_ids("ab", id_map) == [1, 0, 7, 0, 8, 0, 2]
    assert piper_ids("aXb", id_map) == [1, 0, 7, 0, 8, 0, 2]  # an unknown symbol is dropped


def test_long_text_is_split_into_sentences_and_titles_stay_whole() -> None:
    assert split_sentences("Dr. Smith is here. Is he?\n\nYes!") == ["Dr. Smith is here.", "Is he?", "Yes!"]


def test_an_unknown_voice_name_says_what_can_be_picked() -> None:
    with pytest.raises(ModelFileError, match=r"knows no voice called 'nobody'.*heart, joe"):
        resolve_voice("nobody")


def test_a_catalog_voice_not_downloaded_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelFileError, match=r"not downloaded yet.*--download piper-en_us-lessac-medium"):
        resolve_voice("piper-en_us-lessac-medium")


def test_a_missing_voice_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="There is no voice file"):
        resolve_voice(str(tmp_path / "gone.onnx"))


def test_a_voice_without_its_settings_file_says_to_download_both(tmp_path: Path) -> None:
    joe = next(v for v in embedded_voices() if v.id == "joe")
    lonely = tmp_path / "joe.onnx"
    lonely.symlink_to(joe.path)
    with pytest.raises(ModelFileError, match=r"needs its settings file 'joe.onnx.json'.*Download both"):
        resolve_voice(str(lonely))


def test_a_settings_file_that_is_not_a_voices_is_refused(tmp_path: Path) -> None:
    joe = next(v for v in embedded_voices() if v.id == "joe")
    voice = tmp_path / "joe.onnx"
    voice.symlink_to(joe.path)
    (tmp_path / "joe.onnx.json").write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    with pytest.raises(ModelFileError, match="not a piper voice's settings"):
        resolve_voice(str(voice))


def test_a_graph_that_is_not_a_voice_is_refused_when_loaded(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from engines.speech.voices import load_voice

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "not-a-voice",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    joe = next(v for v in embedded_voices() if v.id == "joe")
    shutil.copy(joe.config, tmp_path / "identity.onnx.json")
    info = resolve_voice(str(path))
    assert info.kind == PIPER
    with pytest.raises(ModelFileError, match="is not a piper voice: its inputs are x"):
        load_voice(info)


def test_a_damaged_voice_file_is_reported(tmp_path: Path) -> None:
    from engines.speech.voices import load_voice

    joe = next(v for v in embedded_voices() if v.id == "joe")
    path = tmp_path / "broken.onnx"
    path.write_bytes(Path(joe.path).read_bytes()[:4096])
    shutil.copy(joe.config, tmp_path / "broken.onnx.json")
    with pytest.raises(ModelFileError, match=r"'broken\.onnx' is incomplete"):
        load_voice(resolve_voice(str(path)))


def test_a_downloaded_catalog_voice_is_found_in_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engines.models.catalog import find_entry, load_catalog
    from engines.speech.voices import available_voices, load_voice

    entry = find_entry(load_catalog(), "piper-en_us-lessac-medium")
    joe = next(v for v in embedded_voices() if v.id == "joe")
    # The cache as huggingface_hub lays it out (refs/<revision> -> snapshots/<commit>/<path>), holding
    # joe's files under lessac's names: what is checked here is the lookup, not the voice.
    storage = tmp_path / "models--rhasspy--piper-voices"
    commit = "0" * 40
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / entry.revision).write_text(commit)
    for file, source in zip(entry.files, (joe.path, joe.config), strict=True):
        target = storage / "snapshots" / commit / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    voice = resolve_voice(entry.id)
    assert (voice.id, voice.source, voice.kind, voice.sample_rate_hz) == (entry.id, "catalog", PIPER, 22_050)
    assert voice.path.endswith("en_US-lessac-medium.onnx")
    assert entry.id in [v.id for v in available_voices()]
    spoken = load_voice(voice).synthesize("Hello.", 1.0, None)
    assert len(spoken) > 2_000
