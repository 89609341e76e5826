"""A case bundle: one JSON file an auditor can check offline, with no access
to the store or the bus. It holds the case's events as they went on the bus
(their envelopes) and as they are stored (the bytes the chain hashes), the
chain's links from the case's first event to the nearest anchor after its
last (the hash path), and that anchor.

`check` recomputes each event's hash from its stored form, follows every
link to the anchor, and rebuilds each envelope from the stored form (but
for the encrypted events, whose stored form it cannot read without the
key): one character changed anywhere is caught and located."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic

from handlers.translate import envelope
from infra.store.chain import links
from infra.store.event_store import EventStore
from infra.store.verify import Anchor

FORMAT = "ticketing-case-bundle/1"


def export(store: EventStore, case_id: UUID, anchors: list[Anchor]) -> dict[str, Any]:
    notifications = store.case_notifications(case_id)
    if not notifications:
        raise LookupError(f"no case {case_id}")
    first, last = notifications[0].id, notifications[-1].id
    after = [a for a in anchors if a.position >= last]
    anchor = min(after, key=lambda a: a.position) if after else None
    end = anchor.position if anchor else store.chain_head()[0]
    with store.engine.connect() as conn:
        path = links(conn, first - 1, end - first + 1)
    events = []
    for n in notifications:
        chained = path.get(n.id)
        env = envelope(store.mapper.to_domain_event(n), n.id,
                       (chained.hash, chained.previous_hash) if chained else None)
        events.append({"position": n.id, "envelope": env.model_dump(mode="json"),
                       "stored": {"originator_id": str(n.originator_id), "originator_version": n.originator_version,
                                  "topic": n.topic, "state": base64.b64encode(n.state).decode()}})
    return {"format": FORMAT, "case_id": str(case_id), "events": events,
            "links": [{"position": p, "hash": lk.hash, "previous_hash": lk.previous_hash}
                      for p, lk in sorted(path.items())],
            "anchor": {"position": anchor.position, "hash": anchor.hash, "at": anchor.at} if anchor else None}


def check(bundle: dict[str, Any]) -> tuple[bool, str]:
    """(intact, what was found), from the bundle alone."""
    from infra.store.chain import link

    try:
        path = {int(lk["position"]): lk for lk in bundle["links"]}
        positions = sorted(path)
        for before, after in zip(positions, positions[1:], strict=False):
            if after != before + 1:
                return False, f"the hash path skips from position {before} to {after}"
            if path[after]["previous_hash"] != path[before]["hash"]:
                return False, f"the link at position {after} does not follow the one at {before}"
        reader = EventStore("sqlite://")  # only for its mapper: nothing is read or written
        for event in bundle["events"]:
            position, stored = int(event["position"]), event["stored"]
            where = f"event at position {position} ({event['envelope'].get('type')})"
            if position not in path:
                return False, f"{where} has no link in the hash path"
            state = base64.b64decode(stored["state"])
            own = link(path[position]["previous_hash"], position, UUID(stored["originator_id"]),
                       int(stored["originator_version"]), stored["topic"], state)
            if own != path[position]["hash"]:
                return False, f"{where}: its stored form does not match its hash"
            if event["envelope"].get("hash") != own or event["envelope"].get("position") != position:
                return False, f"{where}: its envelope names another hash or position"
            if not getattr(resolve_topic(stored["topic"]), "confidential", False):
                rebuilt = envelope(reader.mapper.to_domain_event(StoredEvent(
                    UUID(stored["originator_id"]), int(stored["originator_version"]), stored["topic"], state)),
                    position, (own, path[position]["previous_hash"])).model_dump(mode="json")
                if orjson.dumps(rebuilt, option=orjson.OPT_SORT_KEYS) != \
                        orjson.dumps(event["envelope"], option=orjson.OPT_SORT_KEYS):
                    changed = sorted(k for k in rebuilt if rebuilt[k] != event["envelope"].get(k))
                    return False, f"{where}: its envelope differs from its stored form in {', '.join(changed)}"
        anchor = bundle.get("anchor")
        last = positions[-1] if positions else 0
        if anchor is None:
            return True, (f"{len(bundle['events'])} events of case {bundle['case_id']}: hashes and links intact "
                          f"to position {last}; no anchor yet (nothing outside the database vouches for them)")
        if int(anchor["position"]) != last or anchor["hash"] != path[last]["hash"]:
            return False, f"the hash path does not end at the anchor published at {anchor['at']}"
        return True, (f"{len(bundle['events'])} events of case {bundle['case_id']}: hashes and links intact "
                      f"to the anchor at position {anchor['position']}, published at {anchor['at']}")
    except (KeyError, TypeError, ValueError) as error:
        return False, f"not a case bundle: {type(error).__name__}: {error}"
