"""The command line: same queue, engines and pipeline as the window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ember(
    *args: str, home: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "EMBER_HOME": str(home),
        "HOME": str(home),  # no LM Studio, GPT4All or Hugging Face cache of the machine's user
        "PATH": "/usr/bin:/bin",
        "QT_QPA_PLATFORM": "offscreen",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=300,
        cwd=ROOT,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    out = ember("--help", home=tmp_path)
    assert out.returncode == 0
    for command in ("chat", "models", "bench", "self-test"):
        assert command in out.stdout


def test_chat_streams_the_reply_to_stdout(tmp_path: Path) -> None:
    out = ember(
        "chat",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
        "--seed",
        "1",
        "--context",
        "1024",
        home=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) > 3
    assert "tok/s" in out.stderr and "CPU" in out.stderr


def test_chat_json_prints_the_output_with_its_record(tmp_path: Path) -> None:
    out = ember(
        "chat", "-", "--json", "--max-tokens", "6", "--seed", "5", "--context", "1024", home=tmp_path, stdin="Say hi"
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["record"]["provenance"]["seed"] == 5 and data["record"]["delivered"]
    assert data["output"]["generated_tokens"] >= 1


def test_a_base_model_continues_the_text(tmp_path: Path) -> None:
    out = ember(
        "chat", "Once upon a time", "--model", "gemma-3-270m", "--max-tokens", "8", "--context", "512", home=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert "continuing your text" in out.stderr


def test_failures_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04junk")
    for args in (
        ["chat", "hi", "--model", str(bad)],
        ["chat", "hi", "--model", "nope.gguf"],
        ["chat", "hi", "--temperature", "9"],
    ):
        out = ember(*args, home=tmp_path)
        assert out.returncode == 1
        assert out.stderr.startswith("ember: ") and out.stderr.count("\n") == 1, out.stderr


def test_bench_text_writes_figures_beside_the_baseline(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    out = ember("bench", "text", "--tokens", "16", "--reps", "1", "--json", str(target), home=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(target.read_text())
    assert data["bench"] == "text" and data["machine"]["threads"] >= 1
    names = {f["name"]: f for f in data["figures"]}
    assert {"prompt tokens/s", "generation tokens/s", "time to first token"} <= set(names)
    gen = names["generation tokens/s"]
    assert gen["baseline"] > 0 and abs(gen["ratio"] - gen["value"] / gen["baseline"]) < 1e-9
    assert "generation tokens/s" in out.stdout


def test_bench_cpu_kernels_compares_variants_beside_the_avx2_one(tmp_path: Path) -> None:
    target = tmp_path / "kernels.json"
    out = ember(
        "bench", "cpu-kernels", "--tokens", "4", "--rounds", "1", "--variants", "haswell,x64", "--json", str(target),
        home=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    names = {f["name"]: f for f in json.loads(target.read_text())["figures"]}
    assert {"haswell: generation", "x64: generation"} <= set(names)
    assert names["haswell: generation"]["ratio"] == 1.0 and names["x64: generation"]["value"] > 0


def test_models_lists_the_embedded_models(tmp_path: Path) -> None:
    out = ember("models", "--json", home=tmp_path)
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert {m["id"] for m in rows} == {"embedded:smollm2-135m-instruct", "embedded:gemma-3-270m"}
    assert {m["fit"] for m in rows} <= {"runs on the CPU", "fits on the GPU"}


def test_models_catalog_lists_every_kind_with_its_licence_and_fit(tmp_path: Path) -> None:
    out = ember("models", "--catalog", "--json", home=tmp_path)
    assert out.returncode == 0
    rows = json.loads(out.stdout)
    assert {"text", "diffusion", "upscaler", "voice", "guard"} <= {r["kind"] for r in rows}
    assert all(r["licence"] and r["fit"] and r["size_bytes"] > 0 for r in rows)


def test_models_import_uses_the_file_where_it_is_and_remove_forgets_it(tmp_path: Path, smollm2_path: str) -> None:
    import shutil

    mine = tmp_path / "my models" / "smol.gguf"  # a copy: the embedded file itself is listed as embedded
    mine.parent.mkdir()
    shutil.copyfile(smollm2_path, mine)
    out = ember("models", "--import", str(mine), home=tmp_path)
    assert out.returncode == 0 and str(mine) in out.stdout
    rows = json.loads(ember("models", "--json", home=tmp_path).stdout)
    (imported,) = [r for r in rows if r["source"] == "imported"]
    assert imported["path"] == str(mine)
    assert ember("models", "--remove", imported["id"], home=tmp_path).returncode == 0
    assert mine.exists()
    assert not [r for r in json.loads(ember("models", "--json", home=tmp_path).stdout) if r["source"] == "imported"]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"PK\x03\x04 not a model")
    refused = ember("models", "--import", str(broken), home=tmp_path)
    assert refused.returncode == 1 and "GGUF" in refused.stderr


def test_self_test_reports_the_cpu_the_kernels_and_runs_text_and_an_image_step(tmp_path: Path) -> None:
    out = ember("self-test", home=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "ok"
    assert any(line.startswith("CPU: ") for line in lines)
    assert "build: from source (Python environment " in out.stdout  # an installer's build names its variant
    assert any("instruction sets:" in line and ("avx" in line or "neon" in line.lower()) for line in lines)
    assert any(line.startswith("llama.cpp: llama-cpp-python 0.3.36, CPU kernels: ") for line in lines)
    assert any(line.startswith("onnxruntime ") and "CPUExecutionProvider" in line for line in lines)
    assert any(line.startswith("text: ") and " tokens at " in line for line in lines)
    assert any(line.startswith("image: one denoising step") for line in lines)
    checks = lines[lines.index("checks:") + 1 : -1]
    assert [line.split(":")[0].strip() for line in checks] == [
        "PASS  the engine process", "PASS  text through the queue", "PASS  safety filter", "PASS  provenance",
        "PASS  image",
    ]  # fmt: skip
    assert ember("--self-test", home=tmp_path).stdout.splitlines()[-1] == "ok"  # what an installed launcher runs
    written = tmp_path / "report.json"  # what a Windows window build, which has no console, leaves
    report = json.loads(ember("self-test", "--json", "--output", str(written), home=tmp_path).stdout)
    assert json.loads(written.read_text(encoding="utf-8")) == report
    assert report["engine"]["pid"] != report["text"].get("pid", -1) and not report["failure"]
    assert report["engine"]["llama_cpu_variant"] not in ("sapphirerapids",)  # never the crashing AMX kernels
    assert report["image"]["width"] == 64 and report["text"]["tokens"] >= 1


def test_self_test_fails_with_a_one_line_reason(tmp_path: Path) -> None:
    out = ember("self-test", home=tmp_path, env={"EMBER_LLAMA_CPU_VARIANT": "no-such-cpu"})
    assert out.returncode == 1
    assert out.stderr.startswith("ember: Self-test failed: the engine process: ") and out.stderr.count("\n") == 1
    assert "no-such-cpu" in out.stderr and out.stdout.splitlines()[-1].startswith("FAILED: ")
    assert "  FAIL  the engine process: " in out.stdout and "PASS" not in out.stdout  # what follows needs it


def test_llama_cpp_warnings_stay_off_stderr_unless_asked_for(tmp_path: Path) -> None:
    # Gemma 3's sliding-window cache makes llama.cpp warn at load; a person should see only Ember's lines.
    out = ember("chat", "The sea", "--model", "gemma-3-270m", "--max-tokens", "4", "--context", "512", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith("ember: ") for line in out.stderr.splitlines() if line.strip()), out.stderr
