"""The public contract: schemas on disk match the models, the contract's
vocabularies match the domain's, and every domain event maps to a v1 event."""

from __future__ import annotations

import subprocess
import sys
import typing
import uuid
from datetime import UTC, datetime

import pytest

from contracts import types as contract_types
from contracts.alerts import ALERTS
from contracts.catalog import COMMANDS, EVENTS, alert_subject
from contracts.envelope import EventEnvelope
from contracts.generate import drift
from handlers.kinds import KINDS
from handlers.translate import envelope, names
from ticketing import values
from ticketing.case import Case, Context
from ticketing.complaint import Complaint, Registration


def test_json_schemas_on_disk_match_the_models() -> None:
    assert drift() == [], "run `make schemas` and commit contracts/schemas/"


@pytest.mark.parametrize("contract, domain", [
    (contract_types.Role, values.Role), (contract_types.Channel, values.Channel),
    (contract_types.Category, values.Category), (contract_types.Priority, values.Priority),
    (contract_types.ResponsibleParty, values.ResponsibleParty), (contract_types.Severity, values.Severity),
    (contract_types.Department, values.Department), (contract_types.EscalationLevel, values.EscalationLevel),
])
def test_contract_vocabulary_is_the_domain_vocabulary(contract: typing.Any, domain: typing.Any) -> None:
    assert set(typing.get_args(contract)) == {v.value for v in domain}


@pytest.mark.parametrize("aggregate", sorted(KINDS))
def test_every_command_is_an_aggregate_method_and_a_state_table_row(aggregate: str) -> None:
    kind = KINDS[aggregate]
    assert kind.creates in COMMANDS[aggregate]
    for command in COMMANDS[aggregate]:
        if command != kind.creates:
            assert callable(getattr(kind.aggregate, command))
            assert command in kind.aggregate.lifecycle.steps


def _domain_event_classes(aggregate: type[Case]) -> list[type]:
    """The event classes written in the aggregate (not the library's own Created/Event)."""
    return [v for k, v in vars(aggregate).items() if isinstance(v, type) and issubclass(v, Case.Event)
            and k not in ("Event", "Created")]


@pytest.mark.parametrize("aggregate", sorted(KINDS))
def test_every_domain_event_has_a_published_contract(aggregate: str) -> None:
    published = {f"{aggregate}.{name}" for name in EVENTS[aggregate]}
    mapped = {".".join(names(c)) for c in _domain_event_classes(KINDS[aggregate].aggregate)}
    assert mapped == published


def test_envelope_has_the_documented_shape() -> None:
    at = datetime(2026, 11, 25, 2, 5, 15, tzinfo=UTC)
    case = Complaint.register(uuid.uuid4(), Registration(uuid.uuid4(), "email", "delivery", "urgent", "晚到"),
                              Context("agent-007", values.Role.AGENT, at, uuid.uuid4()))
    env = envelope(case.pending_events[0], position=42).model_dump(mode="json")
    assert env["occurred_at"] == "2026-11-25T02:05:15.000000Z"
    assert env["type"] == "complaint.registered" and env["position"] == 42
    assert env["actor"] == {"id": "agent-007", "role": "agent"}
    assert set(env) == set(EventEnvelope.model_fields)
    assert "name" not in env["data"] and "phone" not in env["data"]


def test_the_domain_imports_no_infrastructure() -> None:
    result = subprocess.run([sys.executable, "-m", "importlinter.cli", "--config", "pyproject.toml"],
                            capture_output=True, text=True)
    if "No module named" in result.stderr:
        result = subprocess.run(["lint-imports"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asyncapi_document_on_disk_matches_the_handlers() -> None:
    """`make asyncapi` regenerates it; every command's request schema is in it."""
    import json
    from pathlib import Path

    from infra.docs import document

    text = document().decode()  # what `ticketing asyncapi` prints
    assert text == (Path(__file__).parents[2] / "contracts" / "asyncapi.json").read_text(), \
        "contracts/asyncapi.json is stale: run `make asyncapi` (byte for byte)"
    generated = json.loads(text)
    channels = {channel["address"] for channel in generated["channels"].values()}
    assert {alert_subject(name) for name in ALERTS} <= channels
    for name, alert in ALERTS.items():
        payload = generated["components"]["schemas"][alert.__name__]
        assert set(payload["required"]) >= {"id", "type", "raised_at"}, name
    server = generated["servers"]["ticketing"]
    assert server["host"] == "{host}:{port}" and set(server["variables"]) == {"host", "port"}
    assert "localhost" not in json.dumps(generated["servers"])
    assert generated["components"]["securitySchemes"]["nkey"]["type"] == "asymmetricEncryption"
    assert all(server["security"] for server in generated["servers"].values())
    payloads = generated["components"]["schemas"]
    for aggregate, commands in COMMANDS.items():
        for command in commands:
            payload = payloads[f"{aggregate}.{command}:Message:Payload"]
            assert set(payload["required"]) >= {"command_id", "data"} and "actor" in payload["properties"]


@pytest.mark.parametrize("aggregate", sorted(EVENTS))
def test_each_events_contract_version_is_its_domain_class_version(aggregate: str) -> None:
    from contracts.catalog import event_versions

    for event_class in _domain_event_classes(KINDS[aggregate].aggregate):
        name = names(event_class)[1]
        assert max(event_versions(aggregate, name)) == getattr(event_class, "class_version", 1), name


def test_a_published_event_schema_never_changes_a_new_version_gets_its_own_file() -> None:
    import json
    from pathlib import Path

    schemas = Path(__file__).resolve().parents[2] / "contracts" / "schemas" / "events"
    v1 = json.loads((schemas / "complaint.registered.json").read_text())
    v2 = json.loads((schemas / "complaint.registered.v2.json").read_text())
    assert "channel_detail" not in v1["properties"] and "channel_detail" in v2["properties"]
    assert set(v1["properties"]) < set(v2["properties"]), "v2 only adds"
    shipped = subprocess.run(["git", "show", "f529574:contracts/schemas/events/complaint.registered.json"],
                             capture_output=True, text=True, cwd=schemas, check=False)
    if shipped.returncode == 0:  # a checkout with history: v1 is byte for byte what was published
        assert shipped.stdout == (schemas / "complaint.registered.json").read_text()
