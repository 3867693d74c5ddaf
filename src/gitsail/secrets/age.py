"""age identities and decryption, for SOPS data keys.

age (``age-encryption.org/v1``) is implemented by ``pyrage``, the maintained Python binding of
rage (the Rust implementation that interoperates with ``filippo.io/age``): X25519 recipients,
the v1 header and its HMAC, ChaCha20-Poly1305 payload chunks, and the ASCII armor SOPS stores
its data keys in. This module only adds what gitsail needs around it:

- ``parse_identities``: an age key file as ``age-keygen`` writes it and as Flux reads the
  ``*.agekey`` entries of a decryption Secret (``#`` comments, blank lines, one
  ``AGE-SECRET-KEY-1…`` per line). A line that is not a key refuses the whole file: the error
  names the line number, never its text (it may be a key).
- ``decrypt``: the plaintext for the first identity that matches, else ``AgeError``.

Only X25519 identities are read (what ``age-keygen`` makes and what Flux documents); SSH and
plugin identities are refused with a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyrage  # type: ignore[import-untyped]

__all__ = ["AgeError", "AgeIdentity", "decrypt", "encrypt", "generate", "parse_identities"]

_PREFIX = "AGE-SECRET-KEY-1"
_MAX_IDENTITIES = 1024
_MAX_CIPHERTEXT = 64 << 10  # a SOPS data key is 32 bytes; its armored age file is ~ 400


class AgeError(ValueError):
    """An age key or ciphertext that cannot be used; the message carries no key material."""


@dataclass(frozen=True, repr=False)
class AgeIdentity:
    """One X25519 identity and its public recipient (``age1…``). ``repr`` hides the key."""

    recipient: str
    _identity: Any

    def __repr__(self) -> str:
        return f"AgeIdentity({self.recipient})"


def _identity(text: str) -> AgeIdentity:
    parsed = pyrage.x25519.Identity.from_str(text)
    return AgeIdentity(recipient=str(parsed.to_public()), _identity=parsed)


def parse_identities(text: str, *, source: str = "key file") -> list[AgeIdentity]:
    """The identities of an age key file; ``AgeError`` names the bad line by number."""
    found: list[AgeIdentity] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.upper().startswith(_PREFIX):
            kind = "an SSH key" if line.startswith(("ssh-", "-----BEGIN")) else "not an age key"
            raise AgeError(
                f"{source} line {number}: {kind} (only X25519 identities, "
                f"{_PREFIX}…, are supported)"
            )
        try:
            found.append(_identity(line))
        except Exception:  # pyrage.IdentityError: its text may quote the key
            raise AgeError(f"{source} line {number}: malformed age identity") from None
        if len(found) > _MAX_IDENTITIES:
            raise AgeError(f"{source}: more than {_MAX_IDENTITIES} identities")
    return found


def decrypt(ciphertext: bytes, identities: Sequence[AgeIdentity]) -> bytes:
    """Decrypt an age file (binary or ASCII-armored) with the first identity that matches."""
    if not identities:
        raise AgeError("no age identities to decrypt with")
    if len(ciphertext) > _MAX_CIPHERTEXT:
        raise AgeError(f"age ciphertext larger than {_MAX_CIPHERTEXT} bytes")
    try:
        plain: bytes = pyrage.decrypt(ciphertext, [i._identity for i in identities])
    except pyrage.DecryptError as exc:
        text = str(exc)
        if "No matching keys" in text:
            raise AgeError("no identity matched any of the recipients") from None
        raise AgeError(f"malformed or corrupted age file: {text}") from None
    return plain


def encrypt(plaintext: bytes, recipients: Sequence[str], *, armor: bool = False) -> bytes:
    """Encrypt to X25519 recipients (``age1…``); the tests use it to make fixtures."""
    try:
        parsed = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    except Exception:
        raise AgeError("malformed age recipient") from None
    out: bytes = pyrage.encrypt(plaintext, parsed, armored=armor)
    return out


def generate() -> tuple[str, AgeIdentity]:
    """A new identity: its key-file line (secret) and the parsed identity."""
    parsed = pyrage.x25519.Identity.generate()
    return str(parsed), AgeIdentity(recipient=str(parsed.to_public()), _identity=parsed)
