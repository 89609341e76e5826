"""`ticketing audit verify`: walk the whole store, recompute every event's
hash, check every link against the one before and every event against the
signed anchors, and either vouch for the history or name the first event
altered, removed or inserted.

An anchor (`Anchor`) is the chain's head published outside the database
and signed with the product's audit key; it also holds the first 16 hex
characters of the hash of every event since the anchor before it. So a
chain rewritten consistently (each hash recomputed after an altered event)
is named at the first event whose hash differs from what the anchors hold,
not at the next anchor; an anchor whose signature does not hold under the
key the reader pinned is not counted; and what comes after the last anchor
is said to be unproven (`audit verify --strict` fails on it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from eventsourcing.utils import resolve_topic
from sqlalchemy.engine import Connection

from infra.auth.signing import document_holds
from infra.store.chain import GENESIS, Link, link, walk
from infra.store.event_store import EventStore
from infra.store.policies import altered_policies

DIGEST_CHARS = 16
"""Of each event's hash, what an anchor keeps (64 bits: no one finds another event with the same)."""


@dataclass(frozen=True)
class Anchor:
    position: int
    hash: str
    at: str
    after: int | None = None
    """The position of the anchor before it: `digests` covers (after, position]."""
    digests: str = ""
    key: str = ""
    signature: str = ""

    def document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, document: dict[str, Any]) -> Anchor:
        after = document.get("after")
        return cls(int(document["position"]), str(document["hash"]), str(document["at"]),
                   None if after is None else int(after), str(document.get("digests", "")),
                   str(document.get("key", "")), str(document.get("signature", "")))

    def signed_by(self, key: str) -> bool:
        return document_holds(key, self.document())

    def digest_at(self, position: int) -> str | None:
        if self.after is None or not self.after < position <= self.position:
            return None
        start = (position - self.after - 1) * DIGEST_CHARS
        return self.digests[start:start + DIGEST_CHARS] or None


def trusted(anchors: Iterable[Anchor], key: str | None) -> tuple[list[Anchor], int]:
    """The anchors signed by `key`, and how many were not (none is, without a key)."""
    anchors = list(anchors)
    good = [a for a in anchors if key and a.signed_by(key)]
    return good, len(anchors) - len(good)


@dataclass(frozen=True)
class Finding:
    position: int
    check: str
    """`altered`, `removed`, `inserted`, `link` (a broken link) or `anchor` (the chain was rewritten)."""
    detail: str
    case_id: str | None = None
    event_type: str | None = None


@dataclass
class Verdict:
    events: int = 0
    intact_to: int = 0
    head_hash: str = GENESIS
    anchors_checked: int = 0
    anchored_at: str | None = None
    anchored_position: int | None = None
    seconds: float = 0.0
    finding: Finding | None = None
    notes: list[str] = field(default_factory=list)
    policies_altered: list[str] = field(default_factory=list)
    """SLA policy records whose text no longer has their hash."""
    anchors_refused: int = 0
    """Anchors whose signature does not hold under the pinned audit key (not counted)."""
    unproven_after: int | None = None
    """The events after this position are vouched for by no signed anchor yet (None: all are)."""

    @property
    def intact(self) -> bool:
        return self.finding is None and not self.policies_altered

    @property
    def proven(self) -> bool:
        """Intact, and every event is covered by a signed anchor."""
        return self.intact and self.unproven_after is None and not self.anchors_refused

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"intact": self.intact}

    def summary(self) -> str:
        if self.finding is None and self.policies_altered:
            return "NOT intact: " + "; ".join(self.policies_altered)
        if self.finding is None:
            anchored = (f", anchored at {self.anchored_at} (position {self.anchored_position})"
                        if self.anchored_at else ", no signed anchor yet")
            return f"{self.events} events, chain intact up to position {self.intact_to}{anchored}"
        f = self.finding
        what = f" ({f.event_type} of case {f.case_id})" if f.case_id else ""
        return f"NOT intact: the event at position {f.position}{what}: {f.check}: {f.detail}"


def _type_of(topic: str) -> str:
    try:
        cls = resolve_topic(topic)
        aggregate, _, name = cls.__qualname__.partition(".")
        return f"{aggregate}.{name}"
    except Exception:  # noqa: BLE001 - an unknown topic is itself worth reporting
        return topic


class _Digests:
    """What the anchors hold of each position, read in position order."""

    def __init__(self, anchors: list[Anchor]) -> None:
        self.ranges = sorted((a for a in anchors if a.after is not None), key=lambda a: (a.after, a.position))
        self.next = 0

    def at(self, position: int) -> tuple[str, Anchor] | None:
        while self.next < len(self.ranges) and self.ranges[self.next].position < position:
            self.next += 1
        for anchor in self.ranges[self.next:self.next + 2]:
            digest = anchor.digest_at(position)
            if digest is not None:
                return digest, anchor
        return None


def verify(store: EventStore, anchors: list[Anchor], key: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> Verdict:
    """The whole store against the anchors signed by `key` (the pinned audit key)."""
    started = time.perf_counter()
    verdict = Verdict()
    anchors, verdict.anchors_refused = trusted(anchors, key)
    if verdict.anchors_refused:
        verdict.notes.append(f"{verdict.anchors_refused} anchor(s) not counted: their signature does not hold "
                             f"under the audit key {key or '(none given: --key)'}")
    total = store.max_position()
    with store.engine.connect() as conn:
        try:
            for position, found in _checked(conn, store, anchors, verdict):
                if found is not None:
                    verdict.finding = found
                    break
                if progress is not None and position % 5000 == 0:
                    progress(position, total)
        except Exception as error:  # noqa: BLE001 - a row the database cannot even hand over is a finding
            verdict.finding = Finding(verdict.intact_to + 1, "altered", f"the rows after position "
                                      f"{verdict.intact_to} cannot be read ({type(error).__name__}: {error})")
    if verdict.finding is None:
        _ends(verdict, anchors)
    verdict.policies_altered = altered_policies(store.engine)
    verdict.seconds = time.perf_counter() - started
    if progress is not None:
        progress(verdict.intact_to, total)
    return verdict


def _checked(conn: Connection, store: EventStore, anchors: list[Anchor], verdict: Verdict,
             ) -> Iterator[tuple[int, Finding | None]]:
    """Each position walked, with what is wrong there (None: nothing); the
    verdict follows the intact part as it grows."""
    at_anchor = {a.position: a for a in anchors}
    digests = _Digests(anchors)
    expected, previous = 1, GENESIS
    for row, chained in walk(conn, store.events_table):
        position = row.id if row is not None else chained.position  # type: ignore[union-attr]
        found = _finding(position, expected, previous, row, chained, at_anchor.get(position),
                         digests.at(position))
        yield position, found
        if found is not None:
            return
        previous = chained.hash  # type: ignore[union-attr]
        verdict.events, verdict.intact_to, verdict.head_hash = position, position, previous
        if position in at_anchor:
            verdict.anchors_checked += 1
            verdict.anchored_at, verdict.anchored_position = at_anchor[position].at, position
        expected += 1


def _finding(position: int, expected: int, previous: str, row: Any, chained: Link | None,
             anchor: Anchor | None, digest: tuple[str, Anchor] | None) -> Finding | None:
    case_id = str(row.originator_id) if row is not None else None
    kind = _type_of(row.topic) if row is not None else None

    def found(check: str, detail: str) -> Finding:
        return Finding(position, check, detail, case_id, kind)
    if position < 1:
        return found("inserted", f"an event at position {position}, before the first (positions start at 1): "
                                 "it was not recorded by the product")
    if position != expected:
        return Finding(expected, "removed", f"positions jump from {expected - 1} to {position}: "
                                            f"{position - expected} event(s) and their links removed")
    if row is None:
        return found("removed", "the event is gone; its link remains")
    if chained is None:
        return found("inserted", "the event has no link: it was not recorded by the product")
    if chained.previous_hash != previous:
        return found("link", "its link does not follow the event before it (an event was removed, inserted or "
                             "reordered before it)")
    if not isinstance(row.state, bytes | bytearray | memoryview):
        return found("altered", f"its stored state is {type(row.state).__name__}, not the bytes the product "
                                "writes")
    if link(previous, position, row.originator_id, row.originator_version, row.topic,
            bytes(row.state)) != chained.hash:
        return found("altered", "its content does not match its hash")
    if digest is not None and not chained.hash.startswith(digest[0]):
        return found("anchor", f"the anchor published at {digest[1].at} holds another hash for this event: the "
                               "chain was rewritten from here")
    if anchor is not None and anchor.hash != chained.hash:
        return found("anchor", f"the anchor published at {anchor.at} holds another hash for this position: the "
                               "chain was rewritten")
    return None


def _ends(verdict: Verdict, anchors: list[Anchor]) -> None:
    """What the anchors say of the store's end: cut short, or not vouched for yet."""
    beyond = [a for a in anchors if a.position > verdict.intact_to]
    if beyond:
        first = min(beyond, key=lambda a: a.position)
        verdict.finding = Finding(verdict.intact_to + 1, "removed", f"the anchor published at {first.at} "
                                  f"vouches for position {first.position}, but the store ends at "
                                  f"{verdict.intact_to}: events were removed from its end")
        return
    anchored = verdict.anchored_position or 0
    if verdict.intact_to > anchored:
        verdict.unproven_after = anchored
        verdict.notes.append(f"positions {anchored + 1} to {verdict.intact_to} are not covered by a signed anchor "
                             f"yet: nothing outside the database vouches for them")
