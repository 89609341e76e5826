"""The key the event store is encrypted with (contact data must not sit in
clear text at rest): TICKETING_CIPHER_KEY, else <data dir>/cipher.key,
generated on the first run."""

from __future__ import annotations

import logging

from eventsourcing.cipher import AESCipher

from infra.auth.keys import write_once
from infra.settings import Settings
from infra.store.event_store import EventStore

log = logging.getLogger(__name__)


class NoCipherKey(RuntimeError):
    pass


def cipher_key(settings: Settings, *, create: bool = False) -> str:
    """The store's key. With `create`, a new store gets a new key written to
    the data directory (owner-only); an existing store without its key is
    refused rather than half-encrypted."""
    if settings.cipher_key:
        return settings.cipher_key
    path = settings.cipher_key_file
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise NoCipherKey(f"no cipher key: set TICKETING_CIPHER_KEY or run `ticketing serve` once ({path})")
    plain = EventStore(settings.event_store_url)
    try:
        recorded = plain.max_position()
    finally:
        plain.engine.dispose()
    if recorded:
        raise NoCipherKey(f"the event store holds {recorded} events but there is no key for it: set "
                          f"TICKETING_CIPHER_KEY or put the key back in {path}")
    key = AESCipher.create_key(32)
    kept = write_once(path, (key + "\n").encode()).decode().strip()
    if kept != key:  # another instance starting beside this one made it first
        return kept
    log.warning("generated the event store's cipher key in %s: keep it safe (and backed up); without it the "
                "store cannot be read. Set TICKETING_CIPHER_KEY to use your own.", path)
    return key
