"""How events are stored: the store-key encryption of the events that hold
contact data, the per-customer sealing of their contact fields inside it, and
the transcoding of dates."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.cipher import Cipher
from eventsourcing.compressor import Compressor
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder, Transcoding
from eventsourcing.utils import resolve_topic

from infra.store.keyring import KeyRing, is_sealed


class ConfidentialMapper(Mapper):
    """Encrypts the stored state of the events that hold contact data (their
    class says `confidential`), and only those: the rest of the store stays
    cheap to write and to relay (encrypting everything cost about 14 % of
    the command throughput). Which events are sealed follows from their
    topic, so reading needs no marker."""

    def __init__(self, transcoder: Transcoder, compressor: Compressor | None = None,
                 cipher: Cipher | None = None) -> None:
        super().__init__(transcoder, compressor)
        self._sealed = Mapper(transcoder, compressor, cipher)

    keyring: KeyRing | None = None
    """The customers' keys (infra/store/keyring.py): contact fields are sealed
    with them inside the store-key encryption. None: a mapper that only reads
    what is not sealed (an offline bundle check)."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        cls = type(domain_event)
        if getattr(cls, "sealed", ()) and self.keyring is not None and (plain := plain_fields(domain_event)):
            domain_event = self._with(domain_event, self.keyring.seal(_owner(domain_event), plain))
        if getattr(cls, "confidential", False):
            return self._sealed.to_stored_event(domain_event)
        return super().to_stored_event(domain_event)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = self.still_sealed(stored_event)
        closed = {name: value for name in getattr(type(event), "sealed", ())
                  if is_sealed(value := getattr(event, name))}
        if closed:
            opened = self.keyring.unseal(_owner(event), closed) if self.keyring else dict.fromkeys(closed)
            event = self._with(event, opened)
        return event

    def stored_json(self, stored_event: StoredEvent) -> bytes:
        """The event's state as its JSON, decrypted (sealed contact fields stay sealed)."""
        confidential = getattr(resolve_topic(stored_event.topic), "confidential", False)
        return self.state_json(stored_event.state, confidential)

    def state_json(self, state: bytes, confidential: bool) -> bytes:
        """A stored state as its JSON, decrypted if its class is `confidential`."""
        mapper = self._sealed if confidential else self
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        return state

    def still_sealed(self, stored_event: StoredEvent) -> Any:
        """The event with its contact fields as stored (sealed, or plain in an older store)."""
        if getattr(resolve_topic(stored_event.topic), "confidential", False):
            return self._sealed.to_domain_event(stored_event)
        return super().to_domain_event(stored_event)

    @staticmethod
    def _with(event: Any, values: dict[str, Any]) -> Any:
        """A copy of a (frozen) event with these fields replaced."""
        changed = copy.copy(event)
        for name, value in values.items():
            object.__setattr__(changed, name, value)
        return changed


def _owner(event: Any) -> UUID:
    return getattr(event, event.sealed_for) if event.sealed_for else event.originator_id


def plain_fields(event: Any) -> dict[str, Any]:
    """The contact fields not sealed yet (None stays None: nothing to hide)."""
    return {name: value for name in event.sealed
            if (value := getattr(event, name)) is not None and not is_sealed(value)}


class DateAsISO(Transcoding):
    """Dates (a purchase date) as ISO strings; eventsourcing has datetimes only."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)
