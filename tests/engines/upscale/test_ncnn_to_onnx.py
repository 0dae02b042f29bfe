"""The ncnn to ONNX converter: every weight byte consumed, and the ONNX graph computes what ncnn's layers do.

The reference is numpy written from ncnn's layer definitions (zero-padded convolution,
PReLU, leaky ReLU, channel concat, weighted eltwise sum, torch-style pixel shuffle, nearest
resize ``floor(dst / scale)``, and ncnn's bicubic with a = -0.75 and its edge rules), run on
a small hand-made model whose .bin mixes fp16 and fp32 weight blobs.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engines.errors import ModelFileError
from engines.upscale.models import UPSCALERS
from engines.upscale.ncnn_to_onnx import TAG_FP16, TAG_FP32, convert, parse_param

TINY_PARAM = """7767517
14 16
Input            in         0 1 data
Split            split0     1 2 data d0 d1
Convolution      conv0      1 1 d0 c0 0=4 1=3 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01
PReLU            prelu0     1 1 c0 p0 0=4
Split            split1     1 2 p0 p0a p0b
Convolution      conv1      1 1 p0a c1 0=4 1=3 4=1 5=1 6=144
Concat           cat0       2 1 c1 p0b cc
Convolution      conv2      1 1 cc c2 0=12 1=1 5=0 6=96
ReLU             relu0      1 1 c2 r0
PixelShuffle     shuffle0   1 1 r0 ps 0=2
Interp           near0      1 1 d1 nn 0=1 1=4.000000e+00 2=4.000000e+00
Interp           cubic0     1 1 nn nd 0=3 1=5.000000e-01 2=5.000000e-01
Eltwise          add0       2 1 ps nd sum 0=1 -23301=2,5.000000e-01,1.000000e+00
BinaryOp         mul0       1 1 sum out 0=2 1=1 2=9.000000e-01
"""


class TinyModel:
    """The weights of the hand-made model, and its .bin as ncnn writes it (fp16 blobs for conv0 and conv2)."""

    def __init__(self, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        self.w0 = (rng.standard_normal((4, 3, 3, 3)) * 0.5).astype(np.float16).astype(np.float32)
        self.b0 = rng.standard_normal(4).astype(np.float32)
        self.slope = rng.uniform(0.05, 0.3, 4).astype(np.float32)
        self.w1 = (rng.standard_normal((4, 4, 3, 3)) * 0.3).astype(np.float32)
        self.b1 = rng.standard_normal(4).astype(np.float32)
        self.w2 = (rng.standard_normal((12, 8, 1, 1)) * 0.5).astype(np.float16).astype(np.float32)

    def bin(self) -> bytes:
        def fp16(a: np.ndarray) -> bytes:
            data = a.astype("<f2").tobytes()
            return struct.pack("<I", TAG_FP16) + data + b"\0" * ((-len(data)) % 4)

        def fp32(a: np.ndarray) -> bytes:
            return struct.pack("<I", TAG_FP32) + a.astype("<f4").tobytes()

        def raw(a: np.ndarray) -> bytes:
            return a.astype("<f4").tobytes()

        return b"".join([fp16(self.w0), raw(self.b0), raw(self.slope), fp32(self.w1), raw(self.b1), fp16(self.w2)])

    def write(self, folder: Path, param: str = TINY_PARAM, weights: bytes | None = None) -> tuple[Path, Path]:
        param_path, bin_path = folder / "tiny.param", folder / "tiny.bin"
        param_path.write_text(param)
        bin_path.write_bytes(self.bin() if weights is None else weights)
        return param_path, bin_path

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The model in numpy, from ncnn's layer definitions: x is 3xHxW, the result 3x2Hx2W."""
        c0 = conv2d(x, self.w0, self.b0, pad=1)
        c0 = np.where(c0 > 0, c0, 0.2 * c0)  # the convolution's fused leaky ReLU
        p0 = np.where(c0 > 0, c0, self.slope[:, None, None] * c0)
        c1 = conv2d(p0, self.w1, self.b1, pad=1)
        c2 = np.maximum(conv2d(np.concatenate([c1, p0]), self.w2, None, pad=0), 0)
        up = 0.5 * pixel_shuffle(c2, 2) + 1.0 * ncnn_bicubic(ncnn_nearest(x, 4), 0.5)
        return up * 0.9


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, pad: int) -> np.ndarray:
    """Zero-padded, stride-1 cross-correlation: ncnn's Convolution (and the weights' [out][in][kh][kw] order)."""
    out_ch, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h, wd = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    y = np.zeros((out_ch, h, wd), np.float64)
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("oc,chw->ohw", w[:, :, i, j], xp[:, i : i + h, j : j + wd])
    if b is not None:
        y += b[:, None, None]
    return y.astype(np.float32)


def pixel_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """ncnn PixelShuffle mode 0 (torch's): channel c*r*r + i*r + j goes to (c, y*r+i, x*r+j)."""
    c, h, w = x.shape
    return x.reshape(c // (r * r), r, r, h, w).transpose(0, 3, 1, 4, 2).reshape(c // (r * r), h * r, w * r)


def ncnn_nearest(x: np.ndarray, scale: int) -> np.ndarray:
    """ncnn Interp type 1: source index floor(dst / scale)."""
    h, w = x.shape[1:]
    ys = np.minimum((np.arange(h * scale) / scale).astype(int), h - 1)
    xs = np.minimum((np.arange(w * scale) / scale).astype(int), w - 1)
    return x[:, ys][:, :, xs]


def _cubic_coeffs(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """ncnn's cubic_coeffs (interp.cpp): a = -0.75, half-pixel centres, and its four edge rules."""
    scale = size / out
    offsets, alphas = np.zeros(out, int), np.zeros((out, 4), np.float64)
    a = -0.75
    for dx in range(out):
        fx = (dx + 0.5) * scale - 0.5
        sx = int(np.floor(fx))
        fx -= sx
        f0, f1, f2 = fx + 1, fx, 1 - fx
        c0 = a * f0**3 - 5 * a * f0**2 + 8 * a * f0 - 4 * a
        c1 = (a + 2) * f1**3 - (a + 3) * f1**2 + 1
        c2 = (a + 2) * f2**3 - (a + 3) * f2**2 + 1
        c = [c0, c1, c2, 1 - c0 - c1 - c2]
        if sx <= -1:
            sx, c = 1, [1 - c[3], c[3], 0.0, 0.0]
        if sx == 0:
            sx, c = 1, [c[0] + c[1], c[2], c[3], 0.0]
        if sx == size - 2:
            sx, c = size - 3, [0.0, c[0], c[1], c[2] + c[3]]
        if sx >= size - 1:
            sx, c = size - 3, [0.0, 0.0, c[0], 1 - c[0]]
        offsets[dx], alphas[dx] = sx, c
    return offsets, alphas


def ncnn_bicubic(x: np.ndarray, scale: float) -> np.ndarray:
    """ncnn Interp type 3 at ``scale``: rows then columns, taps at offset-1 .. offset+2."""
    _, h, w = x.shape
    oh, ow = int(h * scale), int(w * scale)
    yo, ya = _cubic_coeffs(h, oh)
    xo, xa = _cubic_coeffs(w, ow)
    cols = sum(x[:, :, xo - 1 + k] * xa[:, k] for k in range(4))
    rows = sum(cols[:, yo - 1 + k, :] * ya[:, k, None] for k in range(4))
    return rows.astype(np.float32)


@pytest.fixture
def tiny(tmp_path: Path) -> TinyModel:
    return TinyModel()


def _run(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x[None]})[0][0]


def test_the_tiny_model_converts_to_a_graph_that_computes_ncnns_layers(tiny: TinyModel, tmp_path: Path) -> None:
    param, weights = tiny.write(tmp_path)
    converted = convert(param, weights)
    assert converted.scale == 2
    assert converted.weight_bytes_read == weights.stat().st_size  # every byte of the .bin
    assert converted.weight_count == 108 + 4 + 4 + 144 + 4 + 96
    for height, width in ((12, 10), (7, 9)):
        x = np.random.default_rng(height).uniform(0, 1, (3, height, width)).astype(np.float32)
        got = _run(converted.onnx_bytes, x)
        assert got.shape == (3, 2 * height, 2 * width)
        np.testing.assert_allclose(got, tiny.reference(x), rtol=1e-4, atol=1e-5)


def test_the_converted_graph_names_its_scale_for_the_inspector(tiny: TinyModel, tmp_path: Path) -> None:
    from engines.models.inspect import inspect_model

    param, weights = tiny.write(tmp_path)
    out = tmp_path / "tiny.onnx"
    out.write_bytes(convert(param, weights).onnx_bytes)
    info = inspect_model(out)
    assert (info.kind, info.details["scale"]) == ("upscaler", 2)


def test_weights_left_over_or_missing_are_refused(tiny: TinyModel, tmp_path: Path) -> None:
    param, weights = tiny.write(tmp_path, weights=tiny.bin() + b"\0" * 8)
    with pytest.raises(ModelFileError, match="uses only"):
        convert(param, weights)
    param, weights = tiny.write(tmp_path, weights=tiny.bin()[:-6])
    with pytest.raises(ModelFileError, match="ends too early"):
        convert(param, weights)


def test_int8_weights_an_unknown_layer_and_a_wrong_file_are_refused_by_name(tiny: TinyModel, tmp_path: Path) -> None:
    int8 = struct.pack("<I", 0x000D4B38) + tiny.bin()[4:]
    param, weights = tiny.write(tmp_path, weights=int8)
    with pytest.raises(ModelFileError, match="int8"):
        convert(param, weights)
    param, weights = tiny.write(tmp_path, param=TINY_PARAM.replace("ReLU             relu0", "Swish            relu0"))
    with pytest.raises(ModelFileError, match="Swish"):
        convert(param, weights)
    param, weights = tiny.write(tmp_path, param="PK\x03\x04 not a param file")
    with pytest.raises(ModelFileError, match="not an ncnn model description"):
        convert(param, weights)


def test_a_graph_that_does_not_upscale_is_refused(tiny: TinyModel, tmp_path: Path) -> None:
    shrink = "7767517\n2 2\nInput in 0 1 data\nInterp down 1 1 data out 0=1 1=5.000000e-01 2=5.000000e-01\n"
    param, weights = tiny.write(tmp_path, param=shrink, weights=b"")
    with pytest.raises(ModelFileError, match="not an upscaler"):
        convert(param, weights)
    mixed = TINY_PARAM.replace("Eltwise          add0       2 1 ps nd sum", "Eltwise          add0       2 1 ps nn sum")
    param, weights = tiny.write(tmp_path, param=mixed)
    with pytest.raises(ModelFileError, match="combines images of different sizes"):
        convert(param, weights)


def _weights_named_in(param_text: str) -> int:
    """How many numbers the .param says the .bin holds: convolution kernels and biases, PReLU slopes."""
    count = 0
    for layer in parse_param(param_text):
        if layer.type == "Convolution":
            count += int(layer.params[6]) + (int(layer.params[0]) if int(layer.params.get(5, 0)) else 0)
        elif layer.type == "PReLU":
            count += int(layer.params.get(0, 1))
    return count


@pytest.mark.parametrize("model", UPSCALERS, ids=[m.id for m in UPSCALERS])
def test_each_embedded_real_esrgan_model_converts_with_every_tensor_consumed(model) -> None:
    files = model.source_files()
    assert files is not None, f"{model.stem} is not installed"
    param, weights = files
    converted = convert(param, weights)
    assert converted.scale == model.scale
    assert converted.weight_bytes_read == weights.stat().st_size
    assert converted.weight_count == _weights_named_in(param.read_text())
    graph = onnx.load_from_string(converted.onnx_bytes).graph
    used = {name for node in graph.node for name in node.input}
    assert {init.name for init in graph.initializer} <= used
    from_bin = sum(int(np.prod(init.dims)) for init in graph.initializer if re.search(r"_(w|b|slope)__\d+$", init.name))
    assert from_bin == converted.weight_count
