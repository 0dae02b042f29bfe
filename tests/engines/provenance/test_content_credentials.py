"""Content Credentials (C2PA) signed offline with the installation's own certificates."""

from __future__ import annotations

import io
import stat
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from PIL import Image

from engines.benchmarks.file_provenance import c2pa_figures
from engines.provenance.content_credentials import (
    UNTRUSTED_NOTE,
    CreationManifest,
    mime_for,
    read_manifest,
    sign_file_bytes,
    signing_identity,
)
from engines.provenance.metadata import TRAINED_ALGORITHMIC_MEDIA

MANIFEST = CreationManifest(
    output_id="9f86d081884c7d659a2feaa0c55ad015",
    created_utc="2026-11-23T10:00:00.000+00:00",
    model_name="tiny-sd",
    model_sha256="ab" * 32,
    title="test.png",
)


def encoded(fmt: str) -> bytes:
    """A small file of each kind, as Pillow (or a plain RIFF writer) makes it."""
    if fmt == "wav":
        import wave

        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(22050)
            w.writeframes((np.sin(np.arange(22050) / 10) * 8000).astype("<i2").tobytes())
        return buffer.getvalue()
    pixels = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[fmt])
    return buffer.getvalue()


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return tmp_path / "provenance"


def test_certificates_are_made_once_with_keys_readable_only_by_the_user(certs: Path) -> None:
    first = signing_identity(certs)
    second = signing_identity(certs)
    assert first == second
    for name in ("c2pa-root.key", "c2pa-signer.key"):
        assert stat.S_IMODE((certs / name).stat().st_mode) == 0o600


def test_signing_certificate_is_issued_by_the_local_root_for_document_signing(certs: Path) -> None:
    identity = signing_identity(certs)
    leaf, root = x509.load_pem_x509_certificates(identity.chain_pem)
    assert leaf.issuer == root.subject and leaf.subject != root.subject  # not self-signed
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36") in eku  # documentSigning
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(root)


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "wav"])
def test_each_format_reads_back_valid_with_the_untrusted_signer_note(certs: Path, fmt: str) -> None:
    signed = sign_file_bytes(encoded(fmt), mime_for(fmt), MANIFEST, certs)
    report = read_manifest(signed, mime_for(fmt))
    assert report.present and report.valid and report.validation_state == "Valid"
    assert report.note == UNTRUSTED_NOTE and report.errors == ()
    assert report.actions == ("c2pa.created",)
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert (report.model_name, report.model_sha256) == ("tiny-sd", "ab" * 32)
    assert report.output_id == MANIFEST.output_id
    assert report.created_utc == MANIFEST.created_utc
    assert report.issuer == "Ember" and report.claim_generator == "Ember"


def test_a_changed_byte_makes_the_manifest_invalid(certs: Path) -> None:
    signed = bytearray(sign_file_bytes(encoded("png"), "image/png", MANIFEST, certs))
    signed[len(signed) // 3] ^= 0xFF  # inside the pixel data, not the manifest
    report = read_manifest(bytes(signed), "image/png")
    assert report.present and not report.valid
    assert any("mismatch" in error for error in report.errors)


def test_a_file_without_credentials_reports_none() -> None:
    report = read_manifest(encoded("png"), "image/png")
    assert not report.present and not report.valid


def test_resaving_with_pillow_drops_the_manifest_so_signing_comes_last(certs: Path) -> None:
    signed = sign_file_bytes(encoded("png"), "image/png", MANIFEST, certs)
    again = io.BytesIO()
    Image.open(io.BytesIO(signed)).save(again, "PNG")
    assert not read_manifest(again.getvalue(), "image/png").present


def test_read_manifest_takes_a_path(certs: Path, tmp_path: Path) -> None:
    path = tmp_path / "signed.webp"
    path.write_bytes(sign_file_bytes(encoded("webp"), "image/webp", MANIFEST, certs))
    assert read_manifest(path).valid


def test_unknown_format_is_refused_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match="png, jpg, webp and wav"):
        mime_for("gif")


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "wav"])
def test_signing_adds_at_most_5_kb_and_20_ms(certs: Path, fmt: str) -> None:
    data = encoded(fmt)
    sign_file_bytes(data, mime_for(fmt), MANIFEST, certs)  # certificates made outside the timing
    times, signed = [], b""
    for _ in range(9):
        start = time.perf_counter()
        signed = sign_file_bytes(data, mime_for(fmt), MANIFEST, certs)
        times.append(time.perf_counter() - start)
    assert len(signed) - len(data) <= 5 * 1024
    assert statistics.median(times) <= 0.020


def test_benchmark_figures_cover_every_format(certs: Path) -> None:
    figures = {f.name: f for f in c2pa_figures(repeats=2, size=64, folder=certs)}
    for fmt in ("png", "jpeg", "webp", "wav"):
        assert figures[f"c2pa read {fmt} (Valid)"].value > 0
        assert 0 < figures[f"c2pa bytes added {fmt}"].value <= 5 * 1024
