"""`ticketing audit verify`: walk the whole store, recompute every event's
hash, check every link and every anchor, and either vouch for the history
or name the first event altered, removed or inserted."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from eventsourcing.utils import resolve_topic

from infra.store.chain import GENESIS, link, walk
from infra.store.event_store import EventStore
from infra.store.policies import altered_policies


@dataclass(frozen=True)
class Anchor:
    position: int
    hash: str
    at: str


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

    @property
    def intact(self) -> bool:
        return self.finding is None and not self.policies_altered

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"intact": self.intact}

    def summary(self) -> str:
        if self.finding is None and self.policies_altered:
            return "NOT intact: " + "; ".join(self.policies_altered)
        if self.finding is None:
            anchored = (f", anchored at {self.anchored_at} (position {self.anchored_position})"
                        if self.anchored_at else ", no anchor yet")
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


def verify(store: EventStore, anchors: list[Anchor], progress: Callable[[int, int], None] | None = None,
           ) -> Verdict:
    started = time.perf_counter()
    verdict = Verdict()
    at_anchor = {a.position: a for a in anchors}
    total = store.max_position()
    with store.engine.connect() as conn:
        try:
            _walk(conn, store, verdict, at_anchor, progress, total)
        except Exception as error:  # noqa: BLE001 - a row the database cannot even hand over is a finding
            verdict.finding = Finding(verdict.intact_to + 1, "altered", f"the rows after position "
                                      f"{verdict.intact_to} cannot be read ({type(error).__name__}: {error})")
    return _end(store, verdict, anchors, started, progress, total)


def _walk(conn: Any, store: EventStore, verdict: Verdict, at_anchor: dict[int, Anchor],
          progress: Callable[[int, int], None] | None, total: int) -> None:
    expected, previous = 1, GENESIS
    if True:
        for row, chained in walk(conn, store.events_table):
            position = row.id if row is not None else chained.position  # type: ignore[union-attr]
            case_id = str(row.originator_id) if row is not None else None
            kind = _type_of(row.topic) if row is not None else None
            found = None
            if position < 1:
                found = Finding(position, "inserted", f"an event at position {position}, before the first "
                                "(positions start at 1): it was not recorded by the product", case_id, kind)
            elif position != expected:
                found = Finding(expected, "removed", f"positions jump from {expected - 1} to {position}: "
                                                     f"{position - expected} event(s) and their links removed")
            elif row is None:
                found = Finding(position, "removed", "the event is gone; its link remains")
            elif chained is None:
                found = Finding(position, "inserted", "the event has no link: it was not recorded by the product",
                                case_id, kind)
            elif chained.previous_hash != previous:
                found = Finding(position, "link", "its link does not follow the event before it (an event was "
                                                  "removed, inserted or reordered before it)", case_id, kind)
            elif not isinstance(row.state, bytes | bytearray | memoryview):
                found = Finding(position, "altered", f"its stored state is {type(row.state).__name__}, not the "
                                "bytes the product writes", case_id, kind)
            elif link(previous, position, row.originator_id, row.originator_version, row.topic,
                      bytes(row.state)) != chained.hash:
                found = Finding(position, "altered", "its content does not match its hash", case_id, kind)
            elif position in at_anchor and at_anchor[position].hash != chained.hash:
                anchor = at_anchor[position]
                found = Finding(position, "anchor", f"the anchor published at {anchor.at} holds another hash for "
                                                    f"this position: the chain was rewritten", case_id, kind)
            if found is not None:
                verdict.finding = found
                break
            previous = chained.hash  # type: ignore[union-attr]
            verdict.events, verdict.intact_to, verdict.head_hash = position, position, previous
            if position in at_anchor:
                verdict.anchors_checked += 1
                verdict.anchored_at, verdict.anchored_position = at_anchor[position].at, position
            expected += 1
            if progress is not None and position % 5000 == 0:
                progress(position, total)


def _end(store: EventStore, verdict: Verdict, anchors: list[Anchor], started: float,
         progress: Callable[[int, int], None] | None, total: int) -> Verdict:
    if verdict.finding is None:
        beyond = [a for a in anchors if a.position > verdict.intact_to]
        if beyond:
            first = min(beyond, key=lambda a: a.position)
            verdict.finding = Finding(verdict.intact_to + 1, "removed", f"the anchor published at {first.at} "
                                      f"vouches for position {first.position}, but the store ends at "
                                      f"{verdict.intact_to}: events were removed from its end")
    verdict.policies_altered = altered_policies(store.engine)
    verdict.seconds = time.perf_counter() - started
    if progress is not None:
        progress(verdict.intact_to, total)
    return verdict
