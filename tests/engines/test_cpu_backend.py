"""llama.cpp's CPU kernels are chosen at run time, never the ones known to crash, and checked once per machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.errors import EmberError
from engines.text.cpu_backend import KNOWN_CRASHING, choose_variant, variant_files

# Scores llama.cpp's variants give themselves on an Intel Xeon with AMX (Sapphire Rapids): 0 = cannot run.
XEON_AMX = {"x64": 1, "sse42": 5, "haswell": 64, "skylakex": 192, "icelake": 1472, "zen4": 1984, "sapphirerapids": 4032}
AMD_ZEN4 = {"x64": 1, "sse42": 5, "haswell": 64, "skylakex": 192, "icelake": 1472, "zen4": 1984, "sapphirerapids": 0}


def test_the_amx_kernels_are_never_chosen_on_a_xeon_that_has_amx() -> None:
    variant, skipped = choose_variant(XEON_AMX)
    assert variant == "zen4"  # AVX-512 with VBMI, VNNI and BF16: the best that does not crash
    assert skipped == (("sapphirerapids", KNOWN_CRASHING["sapphirerapids"]),)
    assert "llama.cpp#20824" in skipped[0][1]


def test_the_best_variant_this_cpu_runs_is_chosen_and_nothing_is_left_out_without_amx() -> None:
    assert choose_variant(AMD_ZEN4) == ("zen4", ())
    assert choose_variant({"x64": 1, "sse42": 5, "haswell": 0}) == ("sse42", ())  # an old CPU without AVX


def test_a_person_may_name_the_variant_but_not_one_that_cannot_run_or_does_not_exist() -> None:
    assert choose_variant(XEON_AMX, override="sapphirerapids") == ("sapphirerapids", ())
    with pytest.raises(EmberError, match="no such CPU variant"):
        choose_variant(XEON_AMX, override="pentium")
    with pytest.raises(EmberError, match="cannot run"):
        choose_variant(AMD_ZEN4, override="sapphirerapids")


def test_a_cpu_that_no_variant_runs_on_is_told_what_to_do() -> None:
    with pytest.raises(EmberError, match="Reinstall Ember"):
        choose_variant({"haswell": 0, "sapphirerapids": 4032})


def test_variant_files_are_found_by_their_names(tmp_path: Path) -> None:
    for name in ("libggml-cpu-haswell.so", "libggml-cpu-zen4.so", "libggml-base.so", "libggml-cuda.so", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(variant_files([tmp_path])) == ["haswell", "zen4"]


def test_this_build_has_run_time_variants_and_the_engine_uses_one(ember_home: Path) -> None:
    import llama_cpp

    from engines.text.cpu_backend import library_folders

    assert "sapphirerapids" in variant_files(library_folders(llama_cpp))  # built, but never loaded


def test_a_variant_that_crashes_in_the_machine_check_is_recorded_and_the_next_one_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_cpu_probe import probe

    from engines.text import cpu_check

    # A home of its own: the shared test cache holds this machine's real verdict, which other tests use.
    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "own-home"))
    verdict = cpu_check.check(probe_target=probe, model_path="unused.gguf")
    assert verdict == {"ok": "icelake", "crashed": ["zen4"]}
    assert cpu_check.recorded_crashes() == ("zen4",)
    assert cpu_check.check(probe_target=probe, model_path="unused.gguf") == verdict  # once per machine
    variant, skipped = choose_variant(AMD_ZEN4, crashing={**KNOWN_CRASHING, "zen4": "it crashed here"})
    assert variant == "icelake" and skipped == (("zen4", "it crashed here"),)
