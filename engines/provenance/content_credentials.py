"""Content Credentials (C2PA): a signed manifest inside every image and WAV Ember saves.

The manifest says the file was created by a generative model (the ``c2pa.created``
action with the IPTC digital source type ``trainedAlgorithmicMedia``), which model
(name and sha256), when, by Ember, and the output id that finds Ember's record
of it. It is signed, so any change to the file after signing shows as Invalid.

Offline signing: on first use this installation makes its own small certificate
authority (a P-256 root, kept under ``data_dir()/provenance/``, key files mode
0600) and a signing certificate issued by it. c2pa-python refuses a self-signed
signing certificate, and no public trust list knows this root, so readers report
the manifest as Valid with the note that the signer is not on a trust list: the
signature proves the file is unchanged since Ember signed it, not who Ember is.

Sign last: re-encoding a file (any save with Pillow) drops the manifest.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.atomic import write_atomic
from engines.errors import EmberError
from engines.paths import data_dir
from engines.provenance.metadata import CREATOR_TOOL, TRAINED_ALGORITHMIC_MEDIA

MIME_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "wav": "audio/wav",
}

UNTRUSTED_NOTE = (
    "Signed with this Ember installation's own certificate, which no public trust list knows: "
    "the signature proves the file has not changed since it was signed, not who signed it."
)
_UNTRUSTED = "signingCredential.untrusted"
# documentSigning is the EKU the C2PA trust model names; c2pa-rs (0.91) still checks a
# signing certificate for emailProtection, timeStamping or OCSPSigning, so both are set.
_DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"
_EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
_ROOT_YEARS = 20
_LEAF_YEARS = 5
_RENEW_BEFORE = dt.timedelta(days=30)
# No thumbnail (it would add over 100 KB to every file) and no network look-ups.
_SETTINGS = {"builder": {"thumbnail": {"enabled": False}}}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ember-studio")
    except Exception:
        return "0.1.0"


@dataclass(frozen=True)
class CreationManifest:
    """What the manifest of one output says. ``created_utc`` is ISO 8601; ``title`` is the file name."""

    output_id: str
    created_utc: str
    model_name: str
    model_sha256: str
    title: str = ""
    kind: str = "image"  # "image" or "audio"

    def to_json(self) -> dict[str, Any]:
        """Return the manifest definition c2pa's Builder takes."""
        parameters: dict[str, Any] = {
            "ember.output_id": self.output_id,
            "ember.kind": self.kind,
            "ember.model": {"name": self.model_name, "sha256": self.model_sha256},
        }
        return {
            "claim_generator_info": [{"name": CREATOR_TOOL, "version": _version()}],
            "title": self.title or f"ember-{self.output_id}",
            "assertions": [
                {
                    "label": "c2pa.actions.v2",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "when": self.created_utc,
                                "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                                "softwareAgent": {"name": CREATOR_TOOL, "version": _version()},
                                "parameters": parameters,
                            }
                        ]
                    },
                }
            ],
        }


@dataclass(frozen=True)
class CredentialReport:
    """What a file's Content Credentials say, as read back and checked.

    ``present``: a manifest was found. ``valid``: its signature and hashes check
    out (``validation_state`` "Valid" or "Trusted"). ``note`` is the untrusted-signer
    note when the signer is not on a trust list (always so for Ember's own
    certificates). ``errors`` lists every other failed check as "code: explanation".
    """

    present: bool
    valid: bool
    validation_state: str
    note: str = ""
    issuer: str = ""
    created_utc: str = ""
    actions: tuple[str, ...] = ()
    digital_source_type: str = ""
    model_name: str = ""
    model_sha256: str = ""
    output_id: str = ""
    claim_generator: str = ""
    errors: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# The local certificate authority


@dataclass(frozen=True)
class SigningIdentity:
    """The PEM chain (signing certificate, then root) and the signing key."""

    chain_pem: bytes
    key_pem: bytes
    root_pem: bytes


def _write_secret(path: Path, data: bytes) -> None:
    write_atomic(path, data)
    os.chmod(path, 0o600)


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ember")]
    )


def _key_usage(sign: bool) -> Any:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def _make_root() -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = _name("Ember local root")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * _ROOT_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(root_key: Any, root_cert: Any) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ObjectIdentifier

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Ember on this computer"))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(min(now + dt.timedelta(days=365 * _LEAF_YEARS), root_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ObjectIdentifier(_DOCUMENT_SIGNING), ObjectIdentifier(_EMAIL_PROTECTION)]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def signing_identity(folder: Path | None = None) -> SigningIdentity:
    """Return this installation's signing chain and key, making them on first use.

    The root (``c2pa-root.pem``, ``c2pa-root.key``) lives for 20 years; the signing
    certificate (``c2pa-signer.pem``, ``c2pa-signer.key``) for 5 and is re-issued
    30 days before it ends. Raises EmberError when the files cannot be read or written.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    folder = folder or data_dir() / "provenance"
    paths = {n: folder / n for n in ("c2pa-root.pem", "c2pa-root.key", "c2pa-signer.pem", "c2pa-signer.key")}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.timezone.utc)
        if paths["c2pa-root.pem"].exists() and paths["c2pa-root.key"].exists():
            root_cert = x509.load_pem_x509_certificate(paths["c2pa-root.pem"].read_bytes())
            root_key = serialization.load_pem_private_key(paths["c2pa-root.key"].read_bytes(), None)
        else:
            root_key, root_cert = _make_root()
            _write_secret(paths["c2pa-root.key"], _key_pem(root_key))
            write_atomic(paths["c2pa-root.pem"], _pem(root_cert))
        leaf_cert = None
        if paths["c2pa-signer.pem"].exists() and paths["c2pa-signer.key"].exists():
            leaf_cert = x509.load_pem_x509_certificate(paths["c2pa-signer.pem"].read_bytes())
            if leaf_cert.issuer != root_cert.subject or leaf_cert.not_valid_after_utc - now < _RENEW_BEFORE:
                leaf_cert = None
        if leaf_cert is None:
            leaf_key, leaf_cert = _make_leaf(root_key, root_cert)
            _write_secret(paths["c2pa-signer.key"], _key_pem(leaf_key))
            write_atomic(paths["c2pa-signer.pem"], _pem(leaf_cert))
        key_pem = paths["c2pa-signer.key"].read_bytes()
    except (OSError, ValueError, EmberError) as exc:
        raise EmberError(
            f"Ember cannot read or make its Content Credentials certificate in {folder} ({exc}). "
            "Check that the folder can be written; moving the c2pa-* files aside makes new ones."
        ) from None
    root_pem = _pem(root_cert)
    return SigningIdentity(_pem(leaf_cert) + root_pem, key_pem, root_pem)


_identities: dict[Path, SigningIdentity] = {}
_identity_lock = threading.Lock()


def _cached_identity(folder: Path | None) -> SigningIdentity:
    key = (folder or data_dir() / "provenance").resolve()
    with _identity_lock:
        identity = _identities.get(key)
        if identity is None:
            identity = _identities[key] = signing_identity(key)
        return identity


# ---------------------------------------------------------------------------
# Signing and reading


def mime_for(fmt: str) -> str:
    """Return the MIME type for a file suffix or format name ("png", "jpg", "webp", "wav"); ValueError otherwise."""
    try:
        return MIME_TYPES[fmt.lower().lstrip(".")]
    except KeyError:
        raise ValueError(
            f"Ember cannot add Content Credentials to {fmt!r} files (png, jpg, webp and wav only)."
        ) from None


def sign_file_bytes(data: bytes, mime: str, manifest: CreationManifest, folder: Path | None = None) -> bytes:
    """Return ``data`` (a whole PNG, JPEG, WebP or WAV file) with the signed manifest embedded.

    ``folder`` holds the certificates (default ``data_dir()/provenance``). Raises
    EmberError when the file cannot be signed (an unsupported or damaged file).
    """
    import c2pa

    identity = _cached_identity(folder)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", identity.chain_pem, identity.key_pem, None))
        with c2pa.Context.from_dict(_SETTINGS, signer=signer) as context:
            with c2pa.Builder.from_json(manifest.to_json(), context=context) as builder:
                out = io.BytesIO()
                builder.sign(mime, io.BytesIO(data), out)
        return out.getvalue()
    except c2pa.C2paError as exc:
        raise EmberError(f"Ember could not add Content Credentials to this {mime} file ({exc}).") from None


def _codes(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    active = results.get("activeManifest") or {}
    return list(active.get(kind) or [])


def read_manifest(source: Path | str | bytes, mime: str | None = None) -> CredentialReport:
    """Return what the Content Credentials in a file (a path or the file's bytes) say, validated.

    ``mime`` defaults to the path's suffix (required for bytes). A file without
    a manifest gives ``present=False``; a manifest the library cannot parse gives
    ``valid=False`` with the reason in ``errors``. Raises EmberError when the file
    cannot be read, ValueError for a suffix Ember does not sign or bytes without ``mime``.
    """
    import c2pa

    if isinstance(source, bytes):
        if mime is None:
            raise ValueError("read_manifest needs the MIME type of bytes.")
        data = source
    else:
        path = Path(source)
        mime = mime or mime_for(path.suffix)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise EmberError(f"Ember cannot read {path} ({exc.strerror or exc}).") from None
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
        if reader is None:
            return CredentialReport(present=False, valid=False, validation_state="")
        with reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state() or ""
    except c2pa.C2paError as exc:
        return CredentialReport(present=True, valid=False, validation_state="Invalid", errors=(str(exc),))
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    results = store.get("validation_results") or {}
    failures = _codes(results, "failure")
    untrusted = any(f.get("code") == _UNTRUSTED for f in failures)
    errors = tuple(f"{f.get('code')}: {f.get('explanation', '')}" for f in failures if f.get("code") != _UNTRUSTED)
    actions: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions.extend((assertion.get("data") or {}).get("actions") or [])
    created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
    parameters = created.get("parameters") or {}
    model = parameters.get("ember.model") or {}
    signature = manifest.get("signature_info") or {}
    generator = manifest.get("claim_generator_info") or [{}]
    return CredentialReport(
        present=True,
        valid=state in ("Valid", "Trusted") and not errors,
        validation_state=state,
        note=UNTRUSTED_NOTE if untrusted else "",
        issuer=str(signature.get("issuer") or signature.get("common_name") or ""),
        created_utc=str(created.get("when") or signature.get("time") or ""),
        actions=tuple(str(a.get("action", "")) for a in actions),
        digital_source_type=str(created.get("digitalSourceType") or ""),
        model_name=str(model.get("name") or ""),
        model_sha256=str(model.get("sha256") or ""),
        output_id=str(parameters.get("ember.output_id") or ""),
        claim_generator=str(generator[0].get("name") or "") if generator else "",
        errors=errors,
    )
