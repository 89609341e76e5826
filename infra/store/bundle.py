"""A case bundle: one JSON file an auditor can check offline, with no access
to the store or the bus. It holds the case's events as they went on the bus
(their envelopes) and as they are stored (the bytes the chain hashes), the
chain's links from the case's first event to the nearest signed anchor
after its last (the hash path), and that anchor; the whole is signed with
the product's audit key when it is made.

`check`, given the public audit key (pinned, or on the command line):
the bundle's signature and the anchor's hold under it; each event's hash is
recomputed from its stored form and every link followed to the anchor; the
case's versions run from 1 without a gap; each envelope is rebuilt from the
stored form (but for the encrypted events, whose stored form it cannot read
without the store's key). One character changed anywhere, an event dropped,
the anchor removed or rewritten: caught and located. Who does not hold the
audit key cannot make a bundle that passes."""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import resolve_topic

from handlers.translate import envelope
from infra.auth.signing import BadKey, Signer, document_holds, verify_key
from infra.store.chain import link, links
from infra.store.event_store import EventStore
from infra.store.verify import Anchor, trusted

FORMAT = "ticketing-case-bundle/2"


def export(store: EventStore, case_id: UUID, anchors: list[Anchor], signer: Signer) -> dict[str, Any]:
    """The case's bundle, signed; LookupError when there is no such case, or
    no signed anchor covers its last event yet."""
    notifications = store.case_notifications(case_id)
    if not notifications:
        raise LookupError(f"no case {case_id}")
    first, last = notifications[0].id, notifications[-1].id
    covering = [a for a in trusted(anchors, signer.public_key)[0] if a.position >= last]
    if not covering:
        raise LookupError(f"no signed anchor covers the case's last event (position {last}) yet: the next is "
                          f"published within TICKETING_AUDIT_ANCHOR_SECONDS; export again then")
    anchor = min(covering, key=lambda a: a.position)
    holding = [a for a in trusted(anchors, signer.public_key)[0]
               if any(a.digest_at(n.id) is not None for n in notifications)]
    with store.engine.connect() as conn:
        path = links(conn, first - 1, anchor.position - first + 1)
    events = []
    for n in notifications:
        chained = path.get(n.id)
        env = envelope(store.mapper.to_domain_event(n), n.id,
                       (chained.hash, chained.previous_hash) if chained else None)
        events.append({"position": n.id, "envelope": env.model_dump(mode="json"),
                       "stored": {"originator_id": str(n.originator_id), "originator_version": n.originator_version,
                                  "topic": n.topic, "state": base64.b64encode(n.state).decode()}})
    return signer.signed({
        "format": FORMAT, "case_id": str(case_id), "events": events,
        "links": [{"position": p, "hash": lk.hash, "previous_hash": lk.previous_hash} for p, lk in sorted(path.items())],
        "anchor": anchor.document(),
        "anchors": [a.document() for a in sorted({a.position: a for a in holding}.values(), key=lambda a: a.position)]})


class Refused(Exception):
    pass


def check(bundle: dict[str, Any], key: str | None) -> tuple[bool, str]:
    """(intact, what was found), from the bundle and the public audit key alone."""
    if not key:
        return False, ("no audit key to check the bundle against: pass --key (`ticketing audit key` prints it "
                       "where the product runs; pin it out of band)")
    try:
        verify_key(key)
        return True, _checked(bundle, key)
    except BadKey as error:
        return False, str(error)
    except Refused as refused:
        return False, str(refused)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return False, f"not a case bundle: {type(error).__name__}: {error}"


def _checked(bundle: dict[str, Any], key: str) -> str:
    if bundle.get("format") != FORMAT:
        raise Refused(f"not a case bundle of this product ({FORMAT}): {bundle.get('format')!r}")
    if not bundle.get("anchor"):
        raise Refused("no signed anchor covers the bundle: nothing outside the database vouches for it")
    anchor = Anchor.of(bundle["anchor"])
    if not anchor.signed_by(key):
        raise Refused(f"the anchor at position {anchor.position} is not signed by the audit key")
    path = {int(lk["position"]): lk for lk in bundle["links"]}
    positions = sorted(path)
    for before, after in zip(positions, positions[1:], strict=False):
        if after != before + 1:
            raise Refused(f"the hash path skips from position {before} to {after}")
        if path[after]["previous_hash"] != path[before]["hash"]:
            raise Refused(f"the link at position {after} does not follow the one at {before}")
    if not positions or positions[-1] != anchor.position or path[positions[-1]]["hash"] != anchor.hash:
        raise Refused(f"the hash path does not end at the anchor published at {anchor.at}")
    _check_events(bundle, path)
    _check_digests(bundle, path, key)
    if not document_holds(key, bundle):  # last: what the checks above find, they also locate
        raise Refused("the bundle's signature does not hold under the audit key: it was changed after it was "
                      "made, or made without the key")
    return (f"{len(bundle['events'])} events of case {bundle['case_id']}: signed by {key}; hashes and links intact "
            f"to the anchor at position {anchor.position}, published at {anchor.at}")


def _check_events(bundle: dict[str, Any], path: dict[int, dict[str, Any]]) -> None:
    reader = EventStore("sqlite://")  # only for its mapper: nothing is read or written
    versions = []
    for event in sorted(bundle["events"], key=lambda e: int(e["position"])):
        position, stored = int(event["position"]), event["stored"]
        where = f"event at position {position} ({event['envelope'].get('type')})"
        if position not in path:
            raise Refused(f"{where} has no link in the hash path")
        if stored["originator_id"] != bundle["case_id"]:
            raise Refused(f"{where} is not of case {bundle['case_id']}")
        versions.append(int(stored["originator_version"]))
        state = base64.b64decode(stored["state"])
        own = link(path[position]["previous_hash"], position, UUID(stored["originator_id"]),
                   int(stored["originator_version"]), stored["topic"], state)
        if own != path[position]["hash"]:
            raise Refused(f"{where}: its stored form does not match its hash")
        if event["envelope"].get("hash") != own or event["envelope"].get("position") != position:
            raise Refused(f"{where}: its envelope names another hash or position")
        if not getattr(resolve_topic(stored["topic"]), "confidential", False):
            rebuilt = envelope(reader.mapper.to_domain_event(StoredEvent(
                UUID(stored["originator_id"]), int(stored["originator_version"]), stored["topic"], state)),
                position, (own, path[position]["previous_hash"])).model_dump(mode="json")
            if orjson.dumps(rebuilt, option=orjson.OPT_SORT_KEYS) != \
                    orjson.dumps(event["envelope"], option=orjson.OPT_SORT_KEYS):
                changed = sorted(k for k in rebuilt if rebuilt[k] != event["envelope"].get(k))
                raise Refused(f"{where}: its envelope differs from its stored form in {', '.join(changed)}")
    if versions != list(range(1, len(versions) + 1)):
        raise Refused(f"the case's versions are {versions}: an event of it is missing from the bundle")


def _check_digests(bundle: dict[str, Any], path: dict[int, dict[str, Any]], key: str) -> None:
    """Each event's hash as a signed anchor published it: the links between
    two events of the case are another case's, which the bundle cannot
    recompute, so a forger could have re-linked them; the anchors' digests
    say what each event's hash was when it was anchored."""
    holding = [a for a in (Anchor.of(d) for d in bundle.get("anchors") or []) if a.signed_by(key)]
    for event in bundle["events"]:
        position = int(event["position"])
        digests = [(d, a) for a in holding if (d := a.digest_at(position)) is not None]
        if not digests:
            raise Refused(f"no signed anchor holds the hash of the event at position {position}")
        for digest, anchor in digests:
            if not path[position]["hash"].startswith(digest):
                raise Refused(f"the event at position {position} ({event['envelope'].get('type')}): the anchor "
                              f"published at {anchor.at} holds another hash for it")
