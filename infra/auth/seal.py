"""Telling the relay's events from anyone else's.

Only the product may publish on `ticketing.v1.events.>` (NATS permissions),
but an operator with admin rights or a misconfigured server can still put a
message into the event stream. So the relay seals every event it publishes:
an HMAC-SHA256 of subject and payload under a key derived from the store's
cipher key (which every part of the product already holds, and no one else),
in the `Ticketing-Seal` header. The relay takes only sealed messages for its
own when it looks for where it stopped; projections and policies apply only
sealed events and park the rest with the reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

HEADER = "Ticketing-Seal"
_LABEL = b"ticketing event seal v1"


class Seal:
    def __init__(self, cipher_key: str) -> None:
        self._key = hmac.new(base64.b64decode(cipher_key), _LABEL, hashlib.sha256).digest()

    def of(self, subject: str, payload: bytes) -> str:
        mac = hmac.new(self._key, subject.encode(), hashlib.sha256)
        mac.update(b"\n")
        mac.update(payload)
        return mac.hexdigest()

    def holds(self, subject: str, payload: bytes, headers: Mapping[str, str] | None) -> bool:
        given = (headers or {}).get(HEADER)
        return given is not None and hmac.compare_digest(given, self.of(subject, payload))
