"""Invariant: a complaint rebuilt from its stored events has exactly the state
it had when they were recorded, at every version, whatever the history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import Application
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketing.case import Context
from ticketing.complaint import Complaint, Registration
from ticketing.errors import DomainError
from ticketing.values import Role

T0 = datetime(2026, 1, 1, tzinfo=UTC)

text = st.text(min_size=1, max_size=20).filter(str.strip)
COMMANDS: dict[str, Any] = {
    "acknowledge": st.fixed_dictionaries({}, optional={"note": text}),
    "assign": st.fixed_dictionaries({"assignee": text}),
    "analyse": st.fixed_dictionaries({"root_cause": text, "plan": text,
                                      "responsible_party": st.sampled_from(["company", "customer"]),
                                      "severity": st.sampled_from(["minor", "critical"])}),
    "escalate": st.fixed_dictionaries({"reason": text}),
    "await_customer": st.fixed_dictionaries({"reason": text}),
    "resume": st.just({}),
    "resolve": st.fixed_dictionaries({"resolution": text, "first_contact": st.booleans()},
                                     optional={"compensation": st.sampled_from(["0", "12.5", "99.99"])}),
    "revisit": st.fixed_dictionaries({"satisfied": st.booleans(), "score": st.integers(0, 100)}),
    "reopen": st.fixed_dictionaries({"reason": text}),
    "withdraw": st.just({}),
    "close": st.just({}),
}
steps = st.lists(st.tuples(st.sampled_from(sorted(COMMANDS)), st.sampled_from(list(Role)), st.data()),
                 max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_replaying_a_complaint_gives_the_same_state_at_every_version(steps: list[Any]) -> None:
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    at = T0
    case = Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "phone", "billing", "low", "描述"),
                              Context("a", Role.AGENT, at, uuid.uuid4()))
    states = [case.state()]
    for command, role, data in steps:
        at += timedelta(minutes=7)
        kwargs = data.draw(COMMANDS[command])
        try:
            getattr(case, command)(Context("x", role, at, uuid.uuid4()), **kwargs)
        except DomainError:
            continue
        states.append(case.state())
    app.save(case)
    for version, state in enumerate(states, start=1):
        assert app.repository.get(case.id, version=version).state() == state
