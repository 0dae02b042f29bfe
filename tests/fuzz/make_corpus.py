"""The seed corpus of ``main.py bench fuzz``: small valid files of every kind a target reads, and hostile ones.

Seeds are where libFuzzer starts: a valid file of each format gets it past the magic numbers at once,
so its time goes to what comes after them. Written to ``tests/fuzz/corpus/TARGET/`` (committed, under
2 MB in all); run again after changing it: ``python tests/fuzz/make_corpus.py [OUTDIR]``.

- gguf-header: a tiny llama GGUF made with the ``gguf`` package (metadata, a vocabulary, two
  tensors) and variants of it (version 2, cut short, lying lengths and counts, nested arrays).
- onnx-header: tiny graphs made with the ``onnx`` package (Conv, Resize, Constant, DepthToSpace,
  MatMulNBits, external weights, fp16).
- image-file: the small files of tests/tools/hostile_media.py, and a few of each format Pillow writes.
- wav-file, audio-file: short WAVs of every sample format Ember reads, with an INFO comment, and
  (audio-file) FLAC, OGG Vorbis and MP3 made with soundfile.
- content-credentials: a PNG, JPEG, WebP and WAV signed by Ember (with a throwaway certificate).
- image-mark, audio-mark, text-mark: bytes the targets turn into arrays (random, and zeros).
- text-metadata: A1111 parameters, EXIF UserComments and an XMP packet as Ember writes them.
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "tools")]
CORPUS = Path(__file__).resolve().parent / "corpus"
MAX_BYTES = {"image-file": 16384, "content-credentials": 65536}  # the others: 8192 (libFuzzer's -max_len)


# -- GGUF ------------------------------------------------------------------------------------------
def _gguf(path: Path) -> bytes:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny fuzz seed")
    writer.add_context_length(128)
    writer.add_block_count(1)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_file_type(7)
    writer.add_license("apache-2.0")
    writer.add_array("general.languages", ["en", "fr"])
    writer.add_array("general.tags", ["text-generation"])
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "</s>", "a", "b", "c", "ab", "bc", "abc"])
    writer.add_token_types([3, 3, 1, 1, 1, 1, 1, 1])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_tensor("token_embd.weight", np.ones((8, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _gguf_seeds(scratch: Path) -> dict[str, bytes]:
    valid = _gguf(scratch / "tiny.gguf")
    end_of_header = valid.index(b"output_norm.weight") + 64
    nested = (
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 17) + b"general.languages"
        + struct.pack("<I", 9) + (struct.pack("<IQ", 9, 1) * 40) + struct.pack("<IQ", 8, 0)
    )  # fmt: skip
    return {
        "tiny.gguf": valid,
        "tiny-v2.gguf": valid[:4] + struct.pack("<I", 2) + valid[8:],
        "header-only.gguf": valid[:end_of_header],
        "cut-in-metadata.gguf": valid[:200],
        "kv-count-large.gguf": valid[:16] + struct.pack("<Q", 1 << 40) + valid[24:],
        "tensor-count-large.gguf": valid[:8] + struct.pack("<Q", 1 << 40) + valid[16:],
        "name-too-long.gguf": valid[:24] + struct.pack("<Q", 1 << 40) + valid[32:],
        "nested-arrays.gguf": nested,
        "magic-only.gguf": b"GGUF",
        "zip.gguf": b"PK\x03\x04" + bytes(60),
    }


# -- ONNX ------------------------------------------------------------------------------------------
def _onnx_seeds() -> dict[str, bytes]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "W")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["roi"], value=numpy_helper.from_array(np.zeros(0, np.float32))),
        helper.make_node("Resize", ["c", "roi", "scales"], ["r"], mode="nearest"),
        helper.make_node("DepthToSpace", ["r"], ["y"], blocksize=2),
    ]
    graph = helper.make_graph(
        nodes,
        "seed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None, 32])],
        [weight, scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fuzz-seed")
    helper.set_model_props(model, {"author": "ember", "license": "apache-2.0"})
    plain = model.SerializeToString()

    half = onnx.ModelProto()
    half.CopyFrom(model)
    half.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float16), "W"))
    external = onnx.ModelProto()
    external.CopyFrom(model)
    tensor = external.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    nbits = helper.make_model(
        helper.make_graph(
            [helper.make_node("MatMulNBits", ["a", "q"], ["b"], domain="com.microsoft", bits=4, K=32, N=8)],
            "nbits",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 32])],
            [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 8])],
            [numpy_helper.from_array(np.zeros((8, 1, 16), dtype=np.uint8), "q")],
        ),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    return {
        "conv-resize.onnx": plain,
        "fp16.onnx": half.SerializeToString(),
        "external-weights.onnx": external.SerializeToString(),
        "matmulnbits.onnx": nbits.SerializeToString(),
        "cut.onnx": plain[: len(plain) // 2],
        "gguf-named-onnx.onnx": b"GGUF" + bytes(28),
    }


# -- images ------------------------------------------------------------------------------------------
def _saved(image: object, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _image_seeds(scratch: Path) -> dict[str, bytes]:
    from hostile_media import write_corpus
    from PIL import Image, PngImagePlugin

    from engines.provenance.metadata import format_parameters, user_comment

    seeds = {m.name: m.path.read_bytes() for m in write_corpus(scratch / "media") if not m.name.endswith(".wav")}
    y, x = np.mgrid[0:16, 0:16]
    rgb = Image.fromarray(np.stack([x * 16, y * 16, (x + y) * 8], -1).astype(np.uint8))
    text = format_parameters({"prompt": "a castle", "steps": 4, "seed": 7, "width": 16, "height": 16})
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = user_comment(text)
    frames = [rgb, rgb.rotate(90), rgb.rotate(180)]
    seeds |= {
        "parameters.png": _saved(rgb, "PNG", pnginfo=info),
        "usercomment.jpg": _saved(rgb, "JPEG", exif=exif.tobytes()),
        "usercomment.webp": _saved(rgb, "WEBP", exif=exif.tobytes()),
        "small.gif": _saved(rgb.convert("P"), "GIF"),
        "animated.gif": _saved(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "animated.png": _saved(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "small.bmp": _saved(rgb, "BMP"),
        "small.tiff": _saved(rgb, "TIFF"),
        "deflate.tiff": _saved(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "grey16.tiff": _saved(Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257), "TIFF"),
        "small.ico": _saved(rgb, "ICO"),
        "small.tga": _saved(rgb, "TGA", compression="tga_rle"),
        "small.ppm": _saved(rgb, "PPM"),
        "small.pcx": _saved(rgb, "PCX"),
        "small.dds": _saved(rgb.convert("RGBA"), "DDS"),
        "small.qoi": _saved(rgb, "QOI"),
        "progressive.jpg": _saved(rgb, "JPEG", progressive=True),
        "lossless.webp": _saved(rgb.convert("RGBA"), "WEBP", lossless=True),
    }
    return seeds


# -- audio -------------------------------------------------------------------------------------------
def _wav(samples: np.ndarray, rate: int, width: int, channels: int = 1) -> bytes:
    from hostile_media import wav_bytes

    return wav_bytes(samples, rate, width, channels)


def _riff(fmt: bytes, data: bytes, extra: bytes = b"") -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _fmt(tag: int, channels: int, rate: int, bits: int, extensible_tag: int | None = None) -> bytes:
    block = channels * bits // 8
    head = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if extensible_tag is None:
        return head
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return head + struct.pack("<HHI", 22, bits, 4) + struct.pack("<H", extensible_tag) + guid_tail


def _wav_seeds(scratch: Path) -> dict[str, bytes]:
    from hostile_media import write_corpus

    from engines.provenance.metadata import format_parameters, wav_info_chunk

    rate = 16_000
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(800) / rate)
    pcm16 = (tone * 32767).astype("<i2")
    info = wav_info_chunk("Ember", format_parameters({"prompt": "hello there", "voice": "heart"}), "2026-01-01")
    pcm24 = b"".join(struct.pack("<i", int(v))[:3] for v in (tone * (2**23 - 1)).astype("<i4"))
    seeds = {
        "pcm16.wav": _wav(pcm16, rate, 2),
        "pcm8.wav": _wav(((tone * 127) + 128).astype(np.uint8), rate, 1),
        "pcm24.wav": _riff(_fmt(1, 1, rate, 24), pcm24),
        "pcm32.wav": _wav((tone * 2**31 * 0.99).astype("<i4"), 22_050, 4),
        "float32.wav": _riff(_fmt(3, 1, 24_000, 32), tone.astype("<f4").tobytes()),
        "float64.wav": _riff(_fmt(3, 1, 8_000, 64), tone[:400].astype("<f8").tobytes()),
        "extensible.wav": _riff(_fmt(0xFFFE, 2, 48_000, 16, extensible_tag=1), np.repeat(pcm16, 2).tobytes()),
        "stereo.wav": _wav(np.repeat(pcm16, 2), 44_100, 2, channels=2),
        "info-comment.wav": _riff(_fmt(1, 1, rate, 16), pcm16.tobytes(), extra=info),
        "odd-chunk.wav": _riff(_fmt(1, 1, rate, 16), pcm16.tobytes()[:-1], extra=b"junk\x03\x00\x00\x00abc\x00"),
    }
    seeds |= {
        m.name: m.path.read_bytes()
        for m in write_corpus(scratch / "media")
        if m.name.endswith(".wav") and m.path.stat().st_size <= 8192
    }
    return seeds


def _audio_seeds(scratch: Path) -> dict[str, bytes]:
    import soundfile

    seeds = {k: v for k, v in _wav_seeds(scratch).items() if k in ("pcm16.wav", "float32.wav", "stereo.wav")}
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16_000).astype(np.float32)
    for name, fmt, subtype in (("small.flac", "FLAC", "PCM_16"), ("small.ogg", "OGG", "VORBIS"),
                               ("small.mp3", "MP3", "MPEG_LAYER_III")):  # fmt: skip
        buffer = io.BytesIO()
        soundfile.write(buffer, tone, 16_000, format=fmt, subtype=subtype)
        seeds[name] = buffer.getvalue()
    return seeds


# -- Content Credentials -----------------------------------------------------------------------------
def _credentials_seeds(scratch: Path) -> dict[str, bytes]:
    from PIL import Image

    from engines.provenance.content_credentials import CreationManifest, sign_file_bytes

    rgb = Image.fromarray(np.full((16, 16, 3), 120, np.uint8))
    wav = _wav((0.1 * np.sin(np.arange(800) / 5) * 32767).astype("<i2"), 16_000, 2)
    manifest = CreationManifest("0" * 32, "2026-01-01T00:00:00Z", "tiny-sd", "ab" * 32)
    audio = CreationManifest("1" * 32, "2026-01-01T00:00:00Z", "heart", "cd" * 32, kind="audio")
    folder = scratch / "identity"
    return {
        "signed.png": b"\x00" + sign_file_bytes(_saved(rgb, "PNG"), "image/png", manifest, folder),
        "signed.jpg": b"\x01" + sign_file_bytes(_saved(rgb, "JPEG"), "image/jpeg", manifest, folder),
        "signed.webp": b"\x02" + sign_file_bytes(_saved(rgb, "WEBP"), "image/webp", manifest, folder),
        "signed.wav": b"\x03" + sign_file_bytes(wav, "audio/wav", audio, folder),
        "unsigned.png": b"\x00" + _saved(rgb, "PNG"),
    }


# -- bytes for the array targets, and metadata text --------------------------------------------------
def _random_seeds(count: int, size: int, label: str) -> dict[str, bytes]:
    seeds = {"zeros": bytes(size)}
    for index in range(count):
        chance = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{label}{index}".encode()).digest()[:4]))
        seeds[f"random-{index}"] = chance.integers(0, 256, size, dtype=np.uint8).tobytes()
    return seeds


def _text_seeds() -> dict[str, bytes]:
    from engines.provenance.metadata import format_parameters, user_comment, xmp_packet

    parameters = format_parameters({
        "prompt": "a lighthouse at dusk, oil painting", "negative_prompt": "blurry", "steps": 4,
        "guidance": 1.5, "seed": 42, "width": 512, "height": 512, "sampler": "euler", "clip_skip": 2,
    })  # fmt: skip
    return {
        "parameters.txt": parameters.encode(),
        "usercomment-unicode.bin": user_comment(parameters),
        "usercomment-le.bin": b"UNICODE\x00" + parameters.encode("utf-16-le"),
        "usercomment-ascii.bin": b"ASCII\x00\x00\x00" + parameters.encode(),
        "xmp.xml": xmp_packet("0" * 32, "2026-01-01T00:00:00Z", "tiny-sd", "ab" * 32, "a castle"),
        "quoted.txt": b'a cat\nNegative prompt: dog\nSteps: 4, Seed: 1, Size: 64x64, Note: "a, b: c"',
    }


def seeds(scratch: Path) -> dict[str, dict[str, bytes]]:
    """Every target's seeds: {target: {file name: bytes}}."""
    makers: dict[str, Callable[[], dict[str, bytes]]] = {
        "gguf-header": lambda: _gguf_seeds(scratch),
        "onnx-header": _onnx_seeds,
        "image-file": lambda: _image_seeds(scratch),
        "wav-file": lambda: _wav_seeds(scratch),
        "audio-file": lambda: _audio_seeds(scratch),
        "image-mark": lambda: _random_seeds(3, 4096, "image-mark"),
        "audio-mark": lambda: _random_seeds(3, 8192, "audio-mark"),
        "text-mark": lambda: _random_seeds(2, 2048, "text-mark") | {"words.txt": b"\x02\x40" + b"the cat sat " * 90},
        "text-metadata": _text_seeds,
        "content-credentials": lambda: _credentials_seeds(scratch),
    }
    return {target: make() for target, make in makers.items()}


def write_corpus(folder: Path = CORPUS) -> dict[str, int]:
    """Write the seeds to ``folder/TARGET/`` (replacing what was there); return the file count a target."""
    import shutil

    counts = {}
    with tempfile.TemporaryDirectory() as scratch:
        for target, files in seeds(Path(scratch)).items():
            place = folder / target
            shutil.rmtree(place, ignore_errors=True)
            place.mkdir(parents=True)
            limit = MAX_BYTES.get(target, 8192)
            for name, data in files.items():
                if len(data) <= limit:
                    (place / name).write_bytes(data)
            counts[target] = sum(1 for _ in place.iterdir())
    return counts


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS
    for target, count in write_corpus(out).items():
        size = sum(p.stat().st_size for p in (out / target).iterdir())
        print(f"{target:22} {count:3} files {size / 1024:8.1f} KiB")
