"""The record of SLA policies adopted: each policy file the product ran
under, with its SHA-256, its whole text and the instant it took effect, kept
in the event store's database. A replay of a case a year later counts its
limits under the policy of then, and names the file by its hash and the
limit by its line."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text, select
from sqlalchemy.engine import Engine

from ticketing.sla.policy import SlaPolicy, policy_digest
from ticketing.sla.timeline import Adopted, PolicyTimeline

policy_metadata = MetaData()
adopted_policies = Table(
    "ticketing_sla_policy",
    policy_metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False),
    Column("adopted_at", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),
)


def adopt(engine: Engine, text: str, at: datetime) -> bool:
    """Record `text` as the policy in force from `at`, unless it already is
    (the latest adopted has the same hash). True when recorded."""
    policy_metadata.create_all(engine)
    digest = policy_digest(text)
    with engine.begin() as conn:
        latest = conn.execute(select(adopted_policies.c.digest).order_by(adopted_policies.c.id.desc())
                              .limit(1)).scalar()
        if latest == digest:
            return False
        conn.execute(adopted_policies.insert().values(digest=digest, adopted_at=at, text=text))
        return True


def timeline(engine: Engine, fallback: SlaPolicy | None = None) -> PolicyTimeline:
    """Every policy adopted, in order. A record whose text no longer has its
    hash is refused (someone edited it); `fallback` serves a store with no
    record yet."""
    policy_metadata.create_all(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(adopted_policies).order_by(adopted_policies.c.id)).mappings().all()
    if altered := altered_policies(engine):
        raise ValueError(altered[0])
    adopted = []
    for row in rows:
        at = row["adopted_at"]
        adopted.append(Adopted(at if at.tzinfo else at.replace(tzinfo=UTC), SlaPolicy.parse(row["text"])))
    if not adopted and fallback is not None:
        adopted.append(Adopted(None, fallback))
    return PolicyTimeline(tuple(adopted))


def altered_policies(engine: Engine) -> list[str]:
    """The policy records whose text no longer has their hash, said for `audit verify`."""
    policy_metadata.create_all(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(adopted_policies).order_by(adopted_policies.c.id)).mappings().all()
    return [f"the SLA policy recorded as adopted at {row['adopted_at']} does not have its hash "
            f"{row['digest'][:12]}...: the record was altered" for row in rows
            if policy_digest(row["text"]) != row["digest"]]
