"""A case bundle doctored by whoever holds it: a compensation changed to
99999.00 with every hash recomputed, the anchor rewritten or removed, the
first or last event dropped, the whole re-signed with a key of one's own.
Each passed `ticketing audit check` before the anchors and bundles were
signed; each is refused against the product's public audit key."""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import pytest

from infra.auth.signing import Signer
from infra.bootstrap import Runtime
from infra.bus.anchors import read_anchors
from infra.store.bundle import check, export
from infra.store.chain import link
from tests.conftest import Client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def bundle(runtime: Runtime, client: Client) -> dict[str, Any]:
    """A complaint resolved with 500.00 of compensation, anchored, exported."""
    case = (await client.register_complaint())["aggregate_id"]
    await client.command("complaint", "acknowledge", {}, aggregate_id=case)
    resolved = await client.command("complaint", "resolve", {"resolution": "赔偿", "first_contact": True,
                                                             "compensation": "500.00"}, aggregate_id=case)
    assert resolved["ok"], resolved
    await client.register_complaint()  # an event of another case after it, on the hash path
    assert runtime.worker is not None and runtime.worker.anchoring is not None
    await runtime.worker.anchoring.publish()
    made = export(runtime.store, UUID(case), await read_anchors(runtime.js), runtime.signer)
    assert check(made, runtime.signer.public_key)[0]
    return made


def rehashed(bundle: dict[str, Any]) -> dict[str, Any]:
    """Every link and envelope hash recomputed from the stored forms, as a forger would."""
    stored = {e["position"]: e for e in bundle["events"]}
    previous = bundle["links"][0]["previous_hash"]
    for lk in bundle["links"]:
        event = stored.get(lk["position"])
        if event is not None:
            s = event["stored"]
            lk["hash"] = link(previous, lk["position"], UUID(s["originator_id"]), int(s["originator_version"]),
                              s["topic"], base64.b64decode(s["state"]))
            event["envelope"]["hash"], event["envelope"]["previous_hash"] = lk["hash"], previous
        lk["previous_hash"] = previous
        previous = lk["hash"]
    return bundle


def compensated(bundle: dict[str, Any], amount: str) -> dict[str, Any]:
    forged = copy.deepcopy(bundle)
    event = next(e for e in forged["events"] if e["envelope"]["type"] == "complaint.resolved")
    state = base64.b64decode(event["stored"]["state"])
    assert b'"500.00"' in state
    event["stored"]["state"] = base64.b64encode(state.replace(b'"500.00"', f'"{amount}"'.encode())).decode()
    event["envelope"]["data"]["compensation"] = amount
    return rehashed(forged)


async def test_a_forged_compensation_is_refused_however_the_anchor_is_handled(
        runtime: Runtime, bundle: dict[str, Any], tmp_path: Path) -> None:
    key = runtime.signer.public_key
    forged = compensated(bundle, "99999.00")
    assert not check(forged, key)[0], "the hash path no longer ends at the signed anchor"

    position = next(e["position"] for e in forged["events"] if e["envelope"]["type"] == "complaint.resolved")
    relinked = copy.deepcopy(forged)  # the next case's link made to follow the forged event, as it now does
    intact, said = check(relinked, key)
    assert not intact and f"position {position}" in said and "anchor" in said, said

    rewritten = copy.deepcopy(forged)
    rewritten["anchor"]["hash"] = "0" * 64
    intact, said = check(rewritten, key)
    assert not intact and "not signed by the audit key" in said, said

    removed = copy.deepcopy(forged)
    removed["anchor"] = None
    intact, said = check(removed, key)
    assert not intact and "no signed anchor" in said

    mine = Signer.of_file(tmp_path / "forger.nk")
    resigned = copy.deepcopy(forged)
    resigned["anchors"] = [mine.signed(a | {"digests": _digests_of(forged, a)}) for a in forged["anchors"]]
    resigned["anchor"] = mine.signed(resigned["anchor"])
    resigned = mine.signed(resigned)
    assert check(resigned, mine.public_key)[0], "consistent under the forger's own key"
    intact, said = check(resigned, key)
    assert not intact, "but not under the product's"


async def test_a_dropped_first_or_last_event_is_refused(runtime: Runtime, bundle: dict[str, Any]) -> None:
    key = runtime.signer.public_key
    first = copy.deepcopy(bundle)
    first["events"] = first["events"][1:]
    intact, said = check(first, key)
    assert not intact and "missing" in said, said

    last = copy.deepcopy(bundle)
    last["events"] = last["events"][:-1]
    intact, said = check(last, key)
    assert not intact and "signature" in said, said


async def test_the_cli_checks_against_a_key_given_or_pinned_and_not_without(
        runtime: Runtime, bundle: dict[str, Any], tmp_path: Path) -> None:
    good, bad = tmp_path / "case.json", tmp_path / "forged.json"
    good.write_bytes(orjson.dumps(bundle))
    forged = compensated(bundle, "99999.00")
    bad.write_bytes(orjson.dumps(forged))
    offline = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    offline["TICKETING_DATA_DIR"] = str(tmp_path / "elsewhere")  # no key there: an auditor's own machine

    def check_cli(path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "ticketing"), "audit", "check", str(path), *args],
                              env=offline | env, capture_output=True, text=True, timeout=60, check=False)
    key = runtime.signer.public_key
    assert check_cli(good, "--key", key).returncode == 0
    assert check_cli(good, **{"TICKETING_AUDIT_PUBLIC_KEY": key}).returncode == 0, "pinned in the setting"
    refused = check_cli(bad, "--key", key)
    assert refused.returncode == 1 and "NOT intact" in refused.stdout
    keyless = check_cli(good)
    assert keyless.returncode == 1 and "--key" in keyless.stdout
    assert check_cli(good, "--key", "UABC").returncode != 0


def _digests_of(bundle: dict[str, Any], anchor: dict[str, Any]) -> str:
    """An anchor's digests with the bundle's (forged) hashes put in where it covers them."""
    digests, after = anchor["digests"], anchor["after"]
    for lk in bundle["links"]:
        start = (lk["position"] - after - 1) * 16
        if 0 <= start < len(digests):
            digests = digests[:start] + lk["hash"][:16] + digests[start + 16:]
    return str(digests)
