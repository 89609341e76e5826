"""Alerts are signed with the product's audit key: a subscriber holding the
public key tells the product's alerts from anything else put on the alert
subjects or into the alert stream (forged breaches went in unnoticed)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from contracts.alerts import ALERT_STREAM
from infra.auth.signing import Signer, message_holds
from infra.bootstrap import Runtime
from infra.settings import Settings
from tests.conftest import Client, FakeClock, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The SLA policy shipped with the product (limits that fall due as the test moves its clock)."""
    return settings.model_copy(update={"sla_policy": None})


async def test_alerts_are_signed_and_a_forged_one_is_told_apart(
        runtime: Runtime, client: Client, clock: FakeClock) -> None:
    """An alert carried no seal: 25 forged breaches were as good as real ones."""
    registered = await client.register_complaint(priority="urgent")
    clock.advance(minutes=31)  # an urgent complaint's first response is due within 30 minutes

    async def alerted() -> Any:
        return (await runtime.js.stream_info(ALERT_STREAM)).state.messages
    await wait_for(alerted, timeout=15)
    info = await runtime.js.stream_info(ALERT_STREAM)
    key = runtime.signer.public_key
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await runtime.js.get_msg(ALERT_STREAM, seq=seq)
        assert message_holds(key, msg.subject, msg.data, msg.headers), msg.subject
        assert orjson.loads(msg.data)["case_id"] == registered["aggregate_id"]
    forged = orjson.dumps({"id": str(uuid.uuid4()), "type": "sla.breached", "case_id": registered["aggregate_id"]})
    ack = await runtime.js.publish("ticketing.v1.alerts.sla.breached", forged, stream=ALERT_STREAM)
    msg = await runtime.js.get_msg(ALERT_STREAM, seq=ack.seq)
    assert not message_holds(key, msg.subject, msg.data, msg.headers), "unsigned"
    other = Signer.of_file(runtime.settings.data_dir / "not-the-product.nk")
    ack = await runtime.js.publish("ticketing.v1.alerts.sla.breached", forged, stream=ALERT_STREAM,
                                   headers=other.headers("ticketing.v1.alerts.sla.breached", forged))
    msg = await runtime.js.get_msg(ALERT_STREAM, seq=ack.seq)
    assert not message_holds(key, msg.subject, msg.data, msg.headers), "signed by another key"


