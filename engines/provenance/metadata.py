"""The readable metadata written into every file Ember saves.

Three forms, each where other tools already look for it:

- the generation parameters as AUTOMATIC1111 writes them (the PNG text chunk
  ``parameters``, or the EXIF UserComment of a JPEG or WebP), so that image
  browsers, Civitai and the web UIs that read A1111 files show the prompt and settings;
- an XMP packet with the IPTC digital source type ``trainedAlgorithmicMedia``,
  the creator tool and the output id (the IPTC and C2PA way to say "made by a
  generative model");
- for WAV files, a RIFF ``LIST``/``INFO`` chunk (software, comment, date).

None of these is tamper-proof (any editor can strip them); the C2PA manifest in
:mod:`engines.provenance.content_credentials` and the watermarks are what survive.
"""

from __future__ import annotations

import json
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CREATOR_TOOL = "Ember"
EMBER_XMP_NS = "urn:ember-studio:provenance:1.0#"

_XMP_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "ember": EMBER_XMP_NS,
}

# ---------------------------------------------------------------------------
# AUTOMATIC1111 "parameters"

# Ember's parameter names and A1111's labels, in the order A1111 writes them.
_LABELS = {
    "steps": "Steps",
    "sampler": "Sampler",
    "guidance": "CFG scale",
    "seed": "Seed",
    "size": "Size",
    "model_hash": "Model hash",
    "model": "Model",
}
_KEYS = {label: key for key, label in _LABELS.items()}
_INTS = {"steps", "seed", "width", "height"}
_FLOATS = {"guidance"}
_NOT_EXTRA = {"prompt", "negative_prompt", "width", "height", "model_sha256", *_LABELS}

# A1111's own pattern (modules/infotext_utils.py): "Key: value" or 'Key: "json, string"', with the
# same matches, except that a label starts at a word's start and is at most 64 characters: A1111's
# unbounded label tries every start in a long run of words, so one line of 100 KB without a colon
# (a PNG text chunk can hold 1 MB) took 43 s to parse (found writing ``bench fuzz``'s targets).
_PARAM = re.compile(r'(?<!\w)(\w[\w \-/]{1,63}):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"


def _quote(value: object) -> str:
    """A1111's quoting: a value with a comma, a colon or a newline becomes a JSON string."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _label(key: str) -> str:
    """An extra key as A1111 labels look: ``clip_skip`` -> ``Clip skip``."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _format_number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # A1111 writes "CFG scale: 7", not "7.0"
    return str(value)


def format_parameters(parameters: Mapping[str, Any]) -> str:
    """Return the generation parameters as the text AUTOMATIC1111 writes (its ``create_infotext``).

    ``prompt`` is the first line(s), ``negative_prompt`` the ``Negative prompt:``
    line (left out when empty, as A1111 does), then ``Steps, Sampler, CFG scale,
    Seed, Size, Model hash, Model`` and every other key as an extra ``Key: value``
    pair. ``Model hash`` is A1111's short hash: the first 10 hex digits of
    ``model_sha256``. Values with commas, colons or newlines are JSON-quoted as
    A1111 does. Raises nothing; values are written with ``str()``.
    """
    fields: dict[str, str] = {}
    if "steps" in parameters:
        fields["steps"] = str(parameters["steps"])
    if "sampler" in parameters:
        fields["sampler"] = str(parameters["sampler"])
    if "guidance" in parameters:
        fields["guidance"] = _format_number(parameters["guidance"])
    if "seed" in parameters:
        fields["seed"] = str(parameters["seed"])
    if "width" in parameters and "height" in parameters:
        fields["size"] = f"{int(parameters['width'])}x{int(parameters['height'])}"
    sha = parameters.get("model_sha256") or parameters.get("model_hash")
    if sha:
        fields["model_hash"] = str(sha)[:10]
    if "model" in parameters:
        fields["model"] = str(parameters["model"])
    pairs = [f"{_LABELS[key]}: {_quote(value)}" for key, value in fields.items()]
    for key, value in parameters.items():
        if key in _NOT_EXTRA or value is None:
            continue
        pairs.append(f"{_label(key)}: {_quote(value)}")
    prompt = str(parameters.get("prompt", ""))
    negative = str(parameters.get("negative_prompt", "") or "")
    negative_line = f"\n{_NEGATIVE} {negative}" if negative else ""
    return f"{prompt}{negative_line}\n{', '.join(pairs)}".strip()


def _typed(key: str, value: str) -> Any:
    try:
        if key in _INTS:
            return int(value)
        if key in _FLOATS:
            number = float(value)
            return number
    except ValueError:
        pass
    return value


def parse_parameters(text: str) -> dict[str, Any]:
    """Return the parameters in an A1111 ``parameters`` text, with Ember's key names.

    Parsed as A1111's ``parse_generation_parameters`` does (the last line holds
    the ``Key: value`` pairs when it has at least three of them). Steps, seed,
    width and height come back as int, guidance as float, ``Model hash`` as
    ``model_hash``; other labels become snake_case keys with string values
    (``Clip skip`` -> ``clip_skip``). Always has ``prompt`` and ``negative_prompt``.
    Raises nothing: text that is not A1111's gives just a prompt.
    """
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.strip().startswith(_NEGATIVE):
            in_negative = True
            line = line.strip()[len(_NEGATIVE) :].strip()
        (negative if in_negative else prompt).append(line)
    result: dict[str, Any] = {"prompt": "\n".join(prompt).strip(), "negative_prompt": "\n".join(negative).strip()}
    for label, raw in _PARAM.findall(last):
        value = _unquote(raw.strip())
        label = label.strip()
        key = _KEYS.get(label, label.lower().replace(" ", "_"))
        size = _SIZE.match(value) if key == "size" else None
        if size:
            result["width"], result["height"] = int(size.group(1)), int(size.group(2))
        else:
            result[key] = _typed(key, value)
    return result


# ---------------------------------------------------------------------------
# EXIF UserComment (how A1111 stores the parameters in JPEG and WebP)

_UNICODE = b"UNICODE\x00"
_ASCII = b"ASCII\x00\x00\x00"


def user_comment(text: str) -> bytes:
    """Return ``text`` as an EXIF UserComment value (the 8-byte ``UNICODE`` prefix, then UTF-16BE, as piexif writes)."""
    return _UNICODE + text.encode("utf-16-be")


def read_user_comment(value: bytes | str) -> str:
    """Return the text in an EXIF UserComment value (UNICODE in either byte order, ASCII, or bare UTF-8)."""
    if isinstance(value, str):
        return value
    head, body = value[:8], value[8:]
    if head == _UNICODE:
        # piexif writes big-endian; some writers use the file's byte order, so guess from the zero bytes.
        big = body[:1] == b"\x00" or body[1:2] != b"\x00"
        return body.decode("utf-16-be" if big else "utf-16-le", errors="replace").rstrip("\x00")
    if head == _ASCII:
        return body.decode("ascii", errors="replace").rstrip("\x00")
    return value.decode("utf-8", errors="replace").rstrip("\x00")


# ---------------------------------------------------------------------------
# XMP


def xmp_packet(
    output_id: str,
    created_utc: str,
    model_name: str = "",
    model_sha256: str = "",
    description: str = "",
    creator_tool: str = CREATOR_TOOL,
) -> bytes:
    """Return an XMP packet (UTF-8) saying the file is made by a generative model.

    Carries ``Iptc4xmpExt:DigitalSourceType`` = trainedAlgorithmicMedia,
    ``xmp:CreatorTool``, ``xmp:CreateDate``, the output id (as
    ``xmpMM:DocumentID`` ``urn:ember:output:<id>`` and ``ember:OutputId``), the
    model and, when given, ``dc:description`` (the prompt).
    """
    attributes = {
        "xmp:CreatorTool": creator_tool,
        "xmp:CreateDate": created_utc,
        "xmpMM:DocumentID": f"urn:ember:output:{output_id}",
        "Iptc4xmpExt:DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "ember:OutputId": output_id,
    }
    if model_name:
        attributes["ember:Model"] = model_name
    if model_sha256:
        attributes["ember:ModelSha256"] = model_sha256
    namespaces = " ".join(f"xmlns:{p}={quoteattr(u)}" for p, u in _XMP_NS.items() if p not in ("x", "rdf"))
    attrs = "\n    ".join(f"{k}={quoteattr(v)}" for k, v in attributes.items())
    body = ""
    if description:
        body = (
            "\n   <dc:description><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{escape(description)}</rdf:li>'
            "</rdf:Alt></dc:description>\n  "
        )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{_XMP_NS["x"]}">\n'
        f' <rdf:RDF xmlns:rdf="{_XMP_NS["rdf"]}">\n'
        f'  <rdf:Description rdf:about="" {namespaces}\n    {attrs}>{body}</rdf:Description>\n'
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def parse_xmp(packet: bytes | str) -> dict[str, str]:
    """Return the fields Ember writes found in an XMP packet.

    Keys (present only when found): ``digital_source_type``, ``creator_tool``,
    ``create_date``, ``output_id``, ``model``, ``model_sha256``, ``description``.
    Raises ValueError when the packet is not well-formed XML.
    """
    text = packet.decode("utf-8", errors="replace") if isinstance(packet, bytes) else packet
    start, end = text.find("<x:xmpmeta"), text.rfind("</x:xmpmeta>")
    if start < 0 or end < 0:
        raise ValueError("This is not an XMP packet (no x:xmpmeta element).")
    try:
        root = ET.fromstring(text[start : end + len("</x:xmpmeta>")])
    except ET.ParseError as exc:
        raise ValueError(f"The XMP packet is not well-formed ({exc}).") from None
    wanted = {
        "digital_source_type": ("Iptc4xmpExt", "DigitalSourceType"),
        "creator_tool": ("xmp", "CreatorTool"),
        "create_date": ("xmp", "CreateDate"),
        "output_id": ("ember", "OutputId"),
        "model": ("ember", "Model"),
        "model_sha256": ("ember", "ModelSha256"),
    }
    found: dict[str, str] = {}
    for description in root.iter(f"{{{_XMP_NS['rdf']}}}Description"):
        for key, (prefix, name) in wanted.items():
            qualified = f"{{{_XMP_NS[prefix]}}}{name}"
            value = description.get(qualified)
            if value is None:
                child = description.find(qualified)
                value = child.text if child is not None else None
            if value is not None and key not in found:
                found[key] = value
        li = description.find(f"{{{_XMP_NS['dc']}}}description//{{{_XMP_NS['rdf']}}}li")
        if li is not None and li.text and "description" not in found:
            found["description"] = li.text
    return found


# ---------------------------------------------------------------------------
# WAV LIST/INFO


def wav_info_chunk(software: str, comment: str, created: str) -> bytes:
    """Return a RIFF ``LIST`` chunk of type ``INFO`` with ISFT (software), ICMT (comment) and ICRD (date).

    Texts are UTF-8, NUL-terminated and padded to an even length as RIFF requires.
    ``created`` is cut to the date (``YYYY-MM-DD``), the form ICRD readers expect.
    """
    day = created[:10]
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        day = created
    body = b"INFO"
    for tag, text in (("ISFT", software), ("ICMT", comment), ("ICRD", day)):
        data = text.encode("utf-8") + b"\x00"
        body += tag.encode("ascii") + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"LIST" + struct.pack("<I", len(body)) + body


def read_wav_info(data: bytes) -> dict[str, str]:
    """Return the INFO fields (``{"ISFT": ..., "ICMT": ..., "ICRD": ...}``) of a RIFF/WAVE file's bytes.

    Raises ValueError when ``data`` is not a RIFF/WAVE file.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("This is not a WAV file (no RIFF/WAVE header).")
    fields: dict[str, str] = {}
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"LIST" and data[pos + 8 : pos + 12] == b"INFO":
            # A LIST that claims more than the file holds is read as far as it goes.
            sub, end = pos + 12, min(pos + 8 + size, len(data))
            while sub + 8 <= end:
                name, length = data[sub : sub + 4], struct.unpack("<I", data[sub + 4 : sub + 8])[0]
                value = data[sub + 8 : sub + 8 + length].rstrip(b"\x00")
                fields[name.decode("ascii", errors="replace")] = value.decode("utf-8", errors="replace")
                sub += 8 + length + (length % 2)
        pos += 8 + size + (size % 2)
    return fields
