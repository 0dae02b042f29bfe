"""The installation's secret: the key of its text, image and audio watermarks.

Made once per installation (32 random bytes, readable only by the user) and
never leaves the machine. Another installation has another key, so its
watermarks neither match nor are matched by this one's.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from engines.atomic import write_atomic
from engines.errors import EmberError
from engines.paths import data_dir

_KEY_BYTES = 32


@dataclass(frozen=True)
class InstallationKey:
    """The secret and a short public id for it (kept in records, safe to show)."""

    secret: bytes
    key_id: str

    def derive(self, purpose: str) -> bytes:
        """Return a 32-byte key for one use ("text-watermark", "image-watermark", ...)."""
        return hashlib.blake2b(purpose.encode("utf-8"), key=self.secret, digest_size=32).digest()


def key_from_secret(secret: bytes) -> InstallationKey:
    return InstallationKey(secret, hashlib.sha256(b"ember-key-id" + secret).hexdigest()[:12])


def installation_key(folder: Path | None = None) -> InstallationKey:
    """Return this installation's key, making it on first use.

    Raises EmberError when the key file cannot be read or written.
    """
    path = (folder or data_dir() / "provenance") / "watermark.key"
    try:
        if path.exists():
            secret = bytes.fromhex(path.read_text(encoding="ascii").strip())
            if len(secret) == _KEY_BYTES:
                return key_from_secret(secret)
            raise EmberError(
                f"The watermark key in {path} is damaged. Move it aside to make a new one "
                "(outputs marked with the old key will no longer be recognised)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(_KEY_BYTES)
        write_atomic(path, secret.hex())
        os.chmod(path, 0o600)
        return key_from_secret(secret)
    except (OSError, ValueError) as exc:
        raise EmberError(f"Ember cannot read or make its watermark key in {path.parent} ({exc}).") from None
