"""The product's audit key: an Ed25519 key (an nkey, `A...` public) that signs
what someone outside the product must be able to check without holding a
secret: the chain's anchors, the alerts, and case bundles.

The events' seal (`infra.auth.seal`) is an HMAC: only the product can check
it, which is all its own readers need. A subscriber, an auditor or a court
holds only the public key (`ticketing audit key`, the `audit.key` query) and
checks a signature with it; whoever does not hold the seed (owner-only in
the data directory, `TICKETING_AUDIT_KEY`) cannot make one.

On the bus a signed message carries two headers: `Ticketing-Key` (the public
key) and `Ticketing-Signature` (base64 of the signature of subject, a line
feed and payload). In a document (an anchor, a bundle) the same two fields
sit beside the content, signing its canonical JSON (sorted keys, no spaces)
without them."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import nkeys
import orjson

from infra.auth.keys import write_once

KEY_HEADER = "Ticketing-Key"
SIGNATURE_HEADER = "Ticketing-Signature"


class BadKey(ValueError):
    """Not a public audit key (an nkey beginning with A)."""


class Signer:
    def __init__(self, seed: bytes) -> None:
        self._pair = nkeys.from_seed(bytearray(seed.strip()))
        self.public_key = str(self._pair.public_key.decode())

    @classmethod
    def of_file(cls, path: Path) -> Signer:
        """The key in `path`, made there (owner-only) on first use."""
        return cls(write_once(path, bytes(nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_ACCOUNT))
                              + b"\n"))

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._pair.sign(data)).decode()

    def headers(self, subject: str, payload: bytes) -> dict[str, str]:
        return {KEY_HEADER: self.public_key, SIGNATURE_HEADER: self.sign(_message(subject, payload))}

    def signed(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """The document with `key` and `signature` beside its content."""
        content = {k: v for k, v in document.items() if k not in ("key", "signature")}
        return content | {"key": self.public_key, "signature": self.sign(canonical(content))}


def canonical(content: Mapping[str, Any]) -> bytes:
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def _message(subject: str, payload: bytes) -> bytes:
    return subject.encode() + b"\n" + payload


def verify_key(public_key: str) -> nacl.signing.VerifyKey:
    """The Ed25519 key inside a public nkey (`A...`), its checksum checked."""
    try:
        raw = base64.b32decode(public_key.strip() + "=" * (-len(public_key.strip()) % 8))
    except (ValueError, TypeError):
        raise BadKey(f"{public_key!r} is not an audit key (an nkey beginning with A)") from None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_ACCOUNT or \
            int.from_bytes(raw[33:], "little") != nkeys.crc16(bytearray(raw[:33])):
        raise BadKey(f"{public_key!r} is not an audit key (an nkey beginning with A)")
    return nacl.signing.VerifyKey(raw[1:33])


def holds(public_key: str, data: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    try:
        verify_key(public_key).verify(data, base64.b64decode(signature, validate=True))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def message_holds(public_key: str, subject: str, payload: bytes, headers: Mapping[str, str] | None) -> bool:
    """Whether a message was signed by `public_key` (the key the reader
    pinned; the message's own `Ticketing-Key` header is only a hint)."""
    return holds(public_key, _message(subject, payload), (headers or {}).get(SIGNATURE_HEADER))


def document_holds(public_key: str, document: Mapping[str, Any]) -> bool:
    content = {k: v for k, v in document.items() if k not in ("key", "signature")}
    return holds(public_key, canonical(content), document.get("signature"))
