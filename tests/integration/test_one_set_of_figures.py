"""One set of figures: for a random seeded history, every figure each view
shows (the dashboard and report queries, the report's JSON, CSV and HTML, the
CLI's dashboard, the console's page) equals the one this test computes from
the events on the stream itself."""

from __future__ import annotations

import asyncio
import csv
import io
import random
import re
from collections import Counter
from typing import Any

import pytest
from rich.console import Console

from contracts.catalog import EVENT_STREAM
from infra import report_files
from infra.bootstrap import Runtime
from infra.cli.views import _dashboard
from infra.console.web import environment
from infra.figures import share
from tests.conftest import Client, FakeClock, customer_data, stream_messages, wait_for
from tests.integration.test_callbacks import the_callback

pytestmark = pytest.mark.anyio

REGIONS = ("华东", "华北", "西北")
TIERS = ("basic", "vip", "strategic")
CATEGORIES = ("delivery", "billing", "product_quality")
OPEN = {"complaint": {"registered", "acknowledged", "analysed", "reopened"}, "callback": {"scheduled"}}
STATUS = {"registered", "acknowledged", "analysed", "resolved", "revisited", "reopened", "closed", "withdrawn",
          "scheduled", "completed", "missed"}


async def drive(rng: random.Random, client: Client, clock: FakeClock, runtime: Runtime) -> None:
    customers = []
    for _ in range(3):
        reply = await client.command("customer", "register", customer_data(
            tier=rng.choice(TIERS), region=rng.choice(REGIONS)))
        customers.append(reply["aggregate_id"])
    for _ in range(rng.randint(3, 8)):
        clock.advance(minutes=rng.randint(1, 30))
        data = {"customer_id": rng.choice(customers), "channel": "phone", "category": rng.choice(CATEGORIES),
                "priority": "normal", "description": "seeded"}
        if rng.random() < 0.5:
            data["region"] = rng.choice(REGIONS)  # else: the customer's
        case = (await client.command("complaint", "register", data))["aggregate_id"]
        if rng.random() < 0.8:
            assert (await client.command("complaint", "acknowledge", {}, aggregate_id=case))["ok"]
        if rng.random() < 0.6:
            resolution = {"resolution": "done", "first_contact": rng.random() < 0.5}
            assert (await client.command("complaint", "resolve", resolution, aggregate_id=case))["ok"]
            callback = (await the_callback(runtime, case))["aggregate_id"]
            fate = rng.random()
            if fate < 0.5:
                score = rng.randint(0, 100)
                assert (await client.command("callback", "complete", {
                    "satisfied": score >= 60, "score": score}, aggregate_id=callback))["ok"]
            elif fate < 0.7:
                for _ in range(3):
                    assert (await client.command("callback", "attempt", {"outcome": "no_answer"},
                                                 aggregate_id=callback))["ok"]


async def quiet(client: Client) -> None:
    """Until the policies have done what they do and every part has it: no
    part behind the store's head, twice half a second apart."""
    async def caught_up() -> int:
        reply = await client.query("health", {})
        return 0 if any(p["lag_events"] for p in reply["parts"]) else int(reply["head"])
    while True:
        head = await wait_for(caught_up, 20)
        await asyncio.sleep(0.5)
        if await wait_for(caught_up, 20) == head:
            return


def computed(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures from the events alone."""
    kinds = Counter(e["type"] for e in events)
    customers = {e["aggregate_id"]: e["data"] for e in events if e["type"] == "customer.registered"}
    cases: dict[str, dict[str, Any]] = {}
    regions: Counter[str] = Counter()
    for e in events:
        kind, name = e["type"].split(".", 1)
        if kind == "customer":
            continue
        if name in ("registered", "scheduled"):
            customer = customers[e["data"]["customer_id"]]
            region = e["data"].get("region") or customer["region"]
            cases[e["aggregate_id"]] = {"kind": kind, "status": name, "region": region, "tier": customer["tier"]}
            if kind == "complaint":
                regions[region] += 1
        elif name in STATUS:
            cases[e["aggregate_id"]]["status"] = name
    resolved = [e for e in events if e["type"] == "complaint.resolved"]
    said = [e for e in resolved if e["data"].get("first_contact") is not None]
    scores = [e["data"]["score"] for e in events if e["type"] == "complaint.revisited" and
              e["data"].get("score") is not None]
    still = [c for c in cases.values() if c["status"] in OPEN.get(c["kind"], ())]
    return {
        "registered": kinds["complaint.registered"], "resolved": len(resolved),
        "first_contact_rate": sum(bool(e["data"]["first_contact"]) for e in said) / len(said) if said else None,
        "callbacks_done": kinds["callback.completed"], "callbacks_missed": kinds["callback.missed"],
        "satisfaction": sum(scores) / len(scores) if scores else None,
        "open_total": len(still),
        "open": {name: dict(Counter(c[name] for c in still)) for name in ("kind", "status", "region", "tier")},
        "top_regions": sorted(regions.items(), key=lambda kv: (-kv[1], kv[0]))[:5],
    }


@pytest.mark.parametrize("seed", [7, 2026, 90210])
async def test_every_view_shows_the_figures_the_events_give(seed: int, runtime: Runtime, client: Client,
                                                            clock: FakeClock) -> None:
    await drive(random.Random(seed), client, clock, runtime)
    await quiet(client)
    want = computed(await stream_messages(runtime.js, EVENT_STREAM))
    period = f"{clock.now:%Y-%m}"

    board = await client.query("dashboard", {})
    report = await client.query("report", {"period": period})
    for figures in (board["today"], board["month"], report["figures"]):
        assert figures["registered"]["complaint"] == want["registered"]
        assert figures["resolved"]["complaint"] == want["resolved"]
        assert figures["first_contact_rate"] == pytest.approx(want["first_contact_rate"])
        assert figures["callbacks_done"] == want["callbacks_done"]
        assert figures["callbacks_missed"] == want["callbacks_missed"]
        assert figures["satisfaction"] == pytest.approx(want["satisfaction"])
    assert board["open_total"] == want["open_total"]
    for name, counts in want["open"].items():
        assert board["open"][name] == counts, name
    assert [(r["name"], r["count"]) for r in report["top"]["regions"]] == want["top_regions"]

    # the report's files: the JSON is the reply, the CSV and the HTML say the same
    assert report_files.json_text(report) == report_files.json_text(dict(report))
    rows = {(s, f): v for s, f, v in csv.reader(io.StringIO(report_files.csv_text(report)))}
    assert rows[("figures", "registered.complaint")] == str(want["registered"])
    assert rows[("figures", "callbacks_done")] == str(want["callbacks_done"])
    assert rows[("figures", "first_contact_rate")] == ("" if want["first_contact_rate"] is None
                                                        else str(report["figures"]["first_contact_rate"]))
    html = report_files.html_page(report)
    assert _row(html, "first-contact resolution")[0] == share(want["first_contact_rate"])
    assert _row(html, "complaints registered")[0] == str(want["registered"])
    for name, _count in want["top_regions"]:
        assert name in html

    # the CLI's dashboard and the console's page, as people read them
    shown = Console(width=200, record=True, file=io.StringIO())
    shown.print(_dashboard(board))
    text = shown.export_text()
    expected_rows = {"complaints registered": str(want["registered"]),
                     "first-contact resolution": share(want["first_contact_rate"]),
                     "callbacks done / missed": f"{want['callbacks_done']} / {want['callbacks_missed']}"}
    for label, value in expected_rows.items():
        line = next(line for line in text.splitlines() if label in line)
        assert line.count(value) == 2, (label, line)  # today and this month
    page = environment.get_template("_now.html").render(board=board)
    for label, value in expected_rows.items():
        assert _row(page, label) == [value, value], label
    assert re.search(r'id="open-total">(\d+)<', page).group(1) == str(want["open_total"])  # type: ignore[union-attr]
    for region, count in want["open"].get("region", {}).items():
        assert re.search(rf'id="open-by-region">.*?<td>{region}</td><td class="num">{count}</td>', page, re.S)


def _row(html: str, label: str) -> list[str]:
    """The cells after a figure's label in an HTML table."""
    found = re.search(rf"<td>{re.escape(label)}</td>(.*?)</tr>", html, re.S)
    assert found, label
    return [cell.strip() for cell in re.findall(r'<td class="num">(.*?)</td>', found.group(1))]
