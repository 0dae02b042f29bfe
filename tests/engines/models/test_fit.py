"""Memory estimates against measurement, verdicts for a person, and GPU detection."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from engines import hardware
from engines.errors import EmberError
from engines.hardware import GpuInfo, Machine, gpus, parse_nvidia_smi
from engines.modalities import model_kinds
from engines.models.fit import (
    FitEstimate,
    Verdict,
    estimate_diffusion,
    estimate_model,
    estimate_of,
    estimate_onnx_graph,
    estimate_text,
    kv_bytes_per_token,
    layers_that_fit,
    verdict,
)
from engines.models.inspect import inspect_model

GB = 10**9

# The peak resident memory of this process. VmHWM rather than ru_maxrss, which Linux carries
# over from the parent across fork and exec (a child of a big pytest process would report the
# parent's peak). macOS reports ru_maxrss in bytes, Linux in KiB.
_PEAK = textwrap.dedent(
    """
    import resource, sys

    def peak_rss():
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    """
)

# Loads a GGUF exactly as the text engine does, evaluates a 600-token prompt and 8 more tokens,
# and prints the growth of the process's peak resident memory over what importing llama_cpp left.
_MEASURE = _PEAK + textwrap.dedent(
    """
    import json, sys
    import psutil
    from engines.text.cpu_backend import ready_llama_cpp
    llama_cpp = ready_llama_cpp()
    from engines.hardware import default_threads
    path, n_ctx = sys.argv[1], int(sys.argv[2])
    before = psutil.Process().memory_info().rss
    threads = default_threads()
    llm = llama_cpp.Llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False)
    text = ("Once upon a time, in a village by the sea, an old fisherman told stories to the children. " * 40)
    tokens = llm.tokenize(text.encode())[:600]
    llm.eval(tokens)
    for _ in range(8):
        llm.eval([llm.sample(temp=0.0)])
    peak = peak_rss()
    print(json.dumps({"increase_bytes": peak - before}))
    """
)


def _measure_peak_rss(path: str, context_tokens: int) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, path, str(context_tokens)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(json.loads(done.stdout.strip().splitlines()[-1])["increase_bytes"])


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX")
@pytest.mark.parametrize("context_tokens", [2048, 8192])
@pytest.mark.parametrize("model", ["smollm2", "gemma"])
def test_text_estimate_is_within_25_percent_of_measured_peak_rss(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], model: str, context_tokens: int
) -> None:
    path = request.getfixturevalue(f"{model}_path")
    estimate = estimate_text(inspect_model(path), context_tokens)
    measured = _measure_peak_rss(path, context_tokens)
    error = estimate.ram_bytes / measured - 1
    with capsys.disabled():
        print(
            f"\n[fit calibration] {Path(path).name} ctx={context_tokens}: estimate {estimate.ram_bytes / 1e6:.1f} MB "
            f"(weights {estimate.weights_bytes / 1e6:.1f}, KV {estimate.kv_cache_bytes / 1e6:.1f}, compute "
            f"{estimate.compute_bytes / 1e6:.1f}, runtime {estimate.overhead_bytes / 1e6:.1f}), measured "
            f"{measured / 1e6:.1f} MB, error {error:+.1%}"
        )
    assert abs(error) <= 0.25


# Runs a diffusers ONNX folder the way a pipeline does (text encoder, two UNet steps, VAE decoder)
# with bare onnxruntime on the CPU, and prints the growth of the peak resident memory.
_MEASURE_DIFFUSION = _PEAK + textwrap.dedent(
    """
    import json, sys
    import numpy as np, onnxruntime as ort, psutil
    folder, size, batch, guidance = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    before = psutil.Process().memory_info().rss
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    run = {c: ort.InferenceSession(f"{folder}/{c}/model.onnx", options, providers=["CPUExecutionProvider"])
           for c in ("text_encoder", "unet", "vae_decoder")}
    states = run["text_encoder"].run(None, {"input_ids": np.zeros((batch * guidance, 77), np.int64)})[0]
    unet_inputs = {i.name: i for i in run["unet"].get_inputs()}
    timestep = np.array(999.0 if unet_inputs["timestep"].shape == [] else [999.0], np.float32)
    latents = np.random.default_rng(0).standard_normal((batch * guidance, 4, size // 8, size // 8), np.float32)
    for _ in range(2):
        out = run["unet"].run(None, {"sample": latents, "timestep": timestep, "encoder_hidden_states": states})[0]
    run["vae_decoder"].run(None, {"latent_sample": out[:batch]})
    peak = peak_rss()
    print(json.dumps({"increase_bytes": peak - before}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="resource.getrusage is POSIX")
@pytest.mark.parametrize(("size", "batch"), [(128, 1), (256, 1), (256, 2)])
def test_diffusion_estimate_is_within_25_percent_of_measured_peak_rss(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], size: int, batch: int
) -> None:
    pytest.importorskip("onnxruntime")
    try:
        folder = request.getfixturevalue("tiny_sd")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_sd fixture is not available")
    estimate = estimate_diffusion(inspect_model(folder), size, size, batch)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE_DIFFUSION, str(folder), str(size), str(batch), "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = int(json.loads(done.stdout.strip().splitlines()[-1])["increase_bytes"])
    error = estimate.ram_bytes / measured - 1
    with capsys.disabled():
        print(
            f"\n[fit calibration] tiny SD {size}x{size} batch {batch} with guidance: estimate "
            f"{estimate.ram_bytes / 1e6:.1f} MB, measured {measured / 1e6:.1f} MB, error {error:+.1%}"
        )
    assert abs(error) <= 0.25


def test_kv_cache_matches_what_llama_cpp_allocates(smollm2_path: str, gemma_path: str) -> None:
    # llama.cpp logs "KV buffer size = 45.00 MiB" (SmolLM2) and 6 + 30 MiB (Gemma 3, SWA + full) at 2048.
    assert kv_bytes_per_token(inspect_model(smollm2_path)) * 2048 == 45 * 2**20
    assert kv_bytes_per_token(inspect_model(gemma_path)) * 2048 == 36 * 2**20


def test_more_context_costs_more_and_offloading_moves_memory(gemma_path: str) -> None:
    info = inspect_model(gemma_path)
    short, long = estimate_text(info, 2048), estimate_text(info, 8192)
    assert long.ram_bytes - short.ram_bytes == long.kv_cache_bytes - short.kv_cache_bytes
    half = estimate_text(info, 4096, gpu_layers=9)
    none = estimate_text(info, 4096, gpu_layers=0)
    full = estimate_text(info, 4096, gpu_layers=-1)
    assert none.vram_bytes == 0 and none.ram_bytes == estimate_text(info, 4096).ram_bytes
    assert none.ram_bytes > half.ram_bytes > full.ram_bytes
    assert 0 < half.vram_bytes < full.vram_bytes and full.gpu_layers == 18


def test_diffusion_estimate_grows_with_image_and_guidance(
    make_diffusers_folder: Callable[..., Path],
) -> None:
    sd = inspect_model(make_diffusers_folder("tiny-sd"))
    lcm = inspect_model(make_diffusers_folder("tiny-lcm", variant="lcm"))
    small, large = estimate_diffusion(sd, 256, 256), estimate_diffusion(sd, 512, 512)
    assert large.ram_bytes > small.ram_bytes > small.weights_bytes
    assert estimate_diffusion(sd, 512, 512, batch=2).compute_bytes > large.compute_bytes
    # LCM runs without classifier-free guidance: half the UNet's batch.
    assert estimate_diffusion(lcm, 512, 512).compute_bytes < large.compute_bytes
    half = inspect_model(make_diffusers_folder("tiny-half", half=True))
    assert estimate_diffusion(half, 512, 512).gpu_compute_bytes < estimate_diffusion(half, 512, 512).compute_bytes


def test_every_kind_gets_an_estimate(upscaler_onnx: Path, piper_voice: Path, smollm2_path: str) -> None:
    for path in (upscaler_onnx, piper_voice, smollm2_path):
        estimate = estimate_model(inspect_model(path))
        assert estimate.ram_bytes > estimate.weights_bytes > 0


def test_every_model_kind_names_an_estimate_that_loads() -> None:
    for kind in model_kinds():
        assert callable(estimate_of(kind.estimate)), kind.kind
    assert estimate_of("") is estimate_onnx_graph
    with pytest.raises(EmberError, match=r"'engines\.models\.fit:no_such_estimate'"):
        estimate_of("engines.models.fit:no_such_estimate")


def test_each_model_gets_the_estimate_of_its_kind(
    smollm2_path: str,
    make_diffusers_folder: Callable[..., Path],
    upscaler_onnx: Path,
    gan_onnx: Path,
    piper_voice: Path,
) -> None:
    text = inspect_model(smollm2_path)
    assert estimate_model(text, context_tokens=2048) == estimate_text(text, 2048)
    sd = inspect_model(make_diffusers_folder("tiny-sd"))
    assert estimate_model(sd, width=256, height=256) == estimate_diffusion(sd, 256, 256)
    upscaler, gan, voice = inspect_model(upscaler_onnx), inspect_model(gan_onnx), inspect_model(piper_voice)
    scale = int(upscaler.details["scale"])
    assert estimate_model(upscaler, width=64, height=64).compute_bytes == (64 * scale) ** 2 * 64 * 4
    assert estimate_model(gan, width=64, height=64).compute_bytes == 64 * 64 * 64 * 4
    assert estimate_model(voice).compute_bytes == 64 * 2**20


# -- verdicts --------------------------------------------------------------------------------------


def _machine(ram_gb: float) -> Machine:
    return Machine("Test OS", "Test CPU", 4, 8, int(ram_gb * GB))


def _text(vram_gb: float, ram_gb: float, layers: int = 32, fixed_gb: float = 1.0) -> FitEstimate:
    vram, fixed = int(vram_gb * GB), int(fixed_gb * GB)
    return FitEstimate(
        kind="text",
        weights_bytes=int(0.8 * ram_gb * GB),
        kv_cache_bytes=0,
        compute_bytes=0,
        gpu_compute_bytes=0,
        overhead_bytes=0,
        ram_bytes=int(ram_gb * GB),
        vram_bytes=vram,
        layers=layers,
        layer_bytes=(vram - fixed) // layers,
        context_tokens=4096,
    )


def test_a_model_that_fits_runs_on_the_gpu() -> None:
    fit = verdict(_text(5.8, 5.5), _machine(32), [GpuInfo("NVIDIA RTX 4090", 24 * GB, 23 * GB, "CUDA")])
    assert (fit.verdict, fit.summary, fit.backend, fit.gpu_layers) == (Verdict.FITS_GPU, "fits on the GPU", "CUDA", -1)


def test_a_model_too_big_for_the_gpu_is_split_by_layers() -> None:
    fit = verdict(_text(5.8, 5.5), _machine(32), [GpuInfo("NVIDIA T600", 4 * GB, 4 * GB, "CUDA")])
    assert fit.verdict is Verdict.PARTIAL
    # (3.8 GB usable - 1 GB fixed) / 150 MB a layer = 18 layers
    assert fit.summary == "partly offloaded: 18 of 32 layers on the GPU" and fit.gpu_layers == 18
    assert layers_that_fit(_text(5.8, 5.5), int(3.8 * GB)) == 18


def test_without_a_gpu_it_runs_on_the_cpu() -> None:
    fit = verdict(_text(5.8, 5.5), _machine(16), [])
    assert (fit.verdict, fit.summary, fit.backend, fit.gpu_layers) == (Verdict.CPU_ONLY, "runs on the CPU", "CPU", 0)
    assert "no GPU" in fit.explanation


def test_a_model_too_big_for_the_machine_says_by_how_much() -> None:
    fit = verdict(_text(20.5, 20.0), _machine(8), [])
    assert fit.verdict is Verdict.DOES_NOT_FIT
    assert fit.summary == "does not fit: needs 20.0 GB, this machine has 8.0 GB"
    assert "smaller model" in fit.explanation


def test_on_unified_memory_there_is_no_partial_offload() -> None:
    mac = [GpuInfo("Apple M2 GPU", 16 * GB, 10 * GB, "Metal", unified_memory=True)]
    assert verdict(_text(8, 7.5), _machine(16), mac).verdict is Verdict.FITS_GPU  # 70% of 16 GB
    assert verdict(_text(12, 11.5), _machine(16), mac).verdict is Verdict.CPU_ONLY


def test_a_cuda_only_export_does_not_fit_without_nvidia(make_diffusers_folder: Callable[..., Path]) -> None:
    estimate = estimate_diffusion(inspect_model(make_diffusers_folder("sd-turbo")), 512, 512)
    cuda_only = FitEstimate(**{**estimate.__dict__, "cuda_only": True})
    mac = [GpuInfo("Apple M2 GPU", 16 * GB, 10 * GB, "Metal", unified_memory=True)]
    fit = verdict(cuda_only, _machine(16), mac)
    assert fit.verdict is Verdict.DOES_NOT_FIT and "NVIDIA" in fit.summary
    assert (
        verdict(cuda_only, _machine(16), [GpuInfo("NVIDIA L4", 24 * GB, 22 * GB, "CUDA")]).verdict is Verdict.FITS_GPU
    )


def test_a_chosen_split_is_judged_as_chosen(gemma_path: str) -> None:
    info = inspect_model(gemma_path)
    gpu = [GpuInfo("NVIDIA L4", 24 * GB, 22 * GB, "CUDA")]
    fit = verdict(estimate_text(info, 4096, gpu_layers=6), _machine(16), gpu)
    assert fit.verdict is Verdict.PARTIAL and fit.summary == "partly offloaded: 6 of 18 layers on the GPU"


# -- GPU detection --------------------------------------------------------------------------------


def _fake_tool(folder: Path, script: str) -> None:
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_gpus_reads_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(tmp_path, "echo 'NVIDIA GeForce RTX 3060, 12288, 11000'\necho 'Tesla T4, 15360, [N/A]'\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = [g for g in gpus() if g.backend == "CUDA"]
    assert found == [
        GpuInfo("NVIDIA GeForce RTX 3060", 12288 * 2**20, 11000 * 2**20, "CUDA"),
        GpuInfo("Tesla T4", 15360 * 2**20, None, "CUDA"),
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for nvidia-smi")
def test_a_failing_or_hanging_nvidia_smi_means_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert [g for g in gpus() if g.backend == "CUDA"] == []  # no tool at all
    _fake_tool(tmp_path, "echo 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert [g for g in gpus() if g.backend == "CUDA"] == []
    _fake_tool(tmp_path, "exec sleep 5\n")
    monkeypatch.setattr(hardware, "_NVIDIA_SMI_TIMEOUT_S", 0.3)
    assert [g for g in gpus() if g.backend == "CUDA"] == []


def test_nvidia_smi_lines_that_do_not_parse_are_skipped() -> None:
    assert parse_nvidia_smi("garbage\nNVIDIA A100-SXM4-80GB, 81920, 80000\n, ,\n") == [
        GpuInfo("NVIDIA A100-SXM4-80GB", 81920 * 2**20, 80000 * 2**20, "CUDA")
    ]
