"""The monthly staff assessment over the real bus: two seeded months of
complaints worked by three agents (assigned or not, resolved by them or by a
supervisor for them, escalated, reopened, called back, disputed), driven with
a moving clock; every figure, score, grade, rank and streak of the scorecards
is compared with what the test computes from what it did, by its own reading
of the shipped rules file."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from infra.bootstrap import Runtime
from infra.bus.nats_server import EmbeddedNats
from infra.config_files import DEFAULT_ASSESSMENT_RULES, DEFAULT_POLICY
from infra.runtime.worker import projections
from infra.settings import Settings
from infra.store.rebuild import rebuild_projections
from projections.base import marks_of
from tests.conftest import Client, FakeClock, add_user, customer_data, directory_with_test_users, wait_for
from tests.integration.test_callbacks import history, the_callback
from ticketing.sla.policy import SlaPolicy

pytestmark = pytest.mark.anyio

ZONE = "Asia/Shanghai"
AGENTS = ("agent-1", "agent-2", "agent-3")
SUPERVISOR = "supervisor-1"
RULES = tomllib.loads(DEFAULT_ASSESSMENT_RULES.read_text(encoding="utf-8"))
POLICY = SlaPolicy.parse(DEFAULT_POLICY.read_text(encoding="utf-8"))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    directory = directory_with_test_users(tmp_path / "data")
    for name in AGENTS[1:]:
        add_user(directory, name, "agent")
    server = EmbeddedNats.start(tmp_path / "nats", directory, preferred_port=0)
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shipped SLA policy (30 min, 4 h, 24 h ...) and a department in Shanghai."""
    return settings.model_copy(update={"sla_policy": None, "timezone": ZONE})


@dataclass
class Case:
    registered_at: datetime
    registrar: str
    assignee: str | None
    acknowledged_at: datetime
    resolved_at: datetime
    resolver: str
    first_contact: bool
    callback: str  # done, missed, none
    caller: str
    escalated: bool = False
    reopened: bool = False
    about_staff: str | None = None
    score: int = 0
    satisfied: bool = True
    case_id: str = ""

    @property
    def person(self) -> str:
        """Whose work it is once resolved: the assignee, else who resolved it."""
        return self.assignee or self.resolver

    @property
    def acknowledger(self) -> str:
        return self.assignee or self.registrar

    @property
    def called_at(self) -> datetime:
        return self.resolved_at + timedelta(hours=2)

    @property
    def reresolved_at(self) -> datetime:
        return self.resolved_at + timedelta(hours=5)


# How each agent works: (share of callbacks missed, minutes to acknowledge, hours to resolve, first contact)
HABITS = {"agent-1": (0.0, (5, 10, 20), (1, 2, 3), 0.9), "agent-2": (0.2, (10, 25, 40), (2, 5, 20), 0.6),
          "agent-3": (0.6, (25, 45, 90), (5, 20, 30), 0.3)}


def plan(rng: random.Random, month_start: datetime, count: int) -> list[Case]:
    cases = []
    for n in range(count):
        start = month_start + timedelta(days=1, hours=13 * n)
        registrar = rng.choice(AGENTS)
        assignee = rng.choice(AGENTS) if rng.random() < 0.6 else None
        worker = assignee or registrar
        missed_share, ack_minutes, resolve_hours, first_contact = HABITS[worker]
        by_supervisor = assignee is not None and rng.random() < 0.25
        case = Case(start, registrar, assignee, start + timedelta(minutes=rng.choice(ack_minutes)),
                    start + timedelta(hours=rng.choice(resolve_hours)), SUPERVISOR if by_supervisor else worker,
                    rng.random() < first_contact, "missed" if rng.random() < missed_share else
                    rng.choice(["done", "done", "none"]), rng.choice(AGENTS))
        case.escalated = assignee is not None and rng.random() < 0.15
        case.reopened = case.callback == "none" and rng.random() < 0.5
        if case.callback == "done":
            case.score = rng.randint(55, 100) if worker != "agent-3" else rng.randint(30, 80)
            case.satisfied = case.score >= 60
        if rng.random() < 0.12:
            case.about_staff = "agent-3" if rng.random() < 0.7 else "agent-2"
        cases.append(case)
    return cases


async def drive(cases: list[Case], client: Client, clock: FakeClock, runtime: Runtime, customer: str) -> None:
    """Each case's steps at their instants, all cases interleaved in time order."""
    steps: list[tuple[datetime, int, int, Case, str]] = []
    for n, case in enumerate(cases):
        steps.append((case.registered_at, n, 0, case, "register"))
        if case.assignee:
            steps.append((case.registered_at + timedelta(minutes=3), n, 1, case, "assign"))
        steps.append((case.acknowledged_at, n, 2, case, "acknowledge"))
        if case.escalated:
            steps.append((case.acknowledged_at + timedelta(minutes=1), n, 3, case, "escalate"))
        steps.append((case.resolved_at, n, 4, case, "resolve"))
        if case.callback != "none":
            steps.append((case.called_at, n, 5, case, "call"))
        if case.reopened:
            steps += [(case.resolved_at + timedelta(hours=3), n, 6, case, "reopen"),
                      (case.reresolved_at, n, 7, case, "resolve again")]
    for at, _, _, case, what in sorted(steps, key=lambda s: s[:3]):
        clock.now = at
        await step(client, runtime, case, what, customer)


async def step(client: Client, runtime: Runtime, case: Case, what: str, customer: str) -> None:
    async def send(command: str, data: dict[str, Any], role: str) -> None:
        reply = await client.command("complaint", command, data, aggregate_id=case.case_id or None, role=role)
        assert reply["ok"], (what, reply)
        case.case_id = case.case_id or reply["aggregate_id"]

    if what == "register":
        await send("register", {"customer_id": customer, "channel": "phone", "category": "service_attitude",
                                "priority": "normal", "description": "seeded"}
                   | ({"about_staff": case.about_staff} if case.about_staff else {}), case.registrar)
    elif what == "assign":
        await send("assign", {"assignee": case.assignee}, SUPERVISOR)
    elif what == "acknowledge":
        await send("acknowledge", {}, case.acknowledger)
    elif what == "escalate":
        await send("escalate", {"reason": "beyond my authority"}, case.assignee or case.registrar)
    elif what in ("resolve", "resolve again"):
        resolver = case.resolver if what == "resolve" or case.resolver == SUPERVISOR else case.person
        if case.escalated:
            resolver = SUPERVISOR
        await send("resolve", {"resolution": "处理完毕", "first_contact": case.first_contact}, resolver)
    elif what == "reopen":
        await send("reopen", {"reason": "the fault came back"}, SUPERVISOR)
    elif what == "call":
        callback = (await the_callback(runtime, case.case_id))["aggregate_id"]
        if case.callback == "missed":
            for _ in range(3):
                reply = await client.command("callback", "attempt", {"outcome": "no_answer"}, aggregate_id=callback,
                                             role=case.caller)
                assert reply["ok"], reply
            return
        reply = await client.command("callback", "complete", {"satisfied": case.satisfied, "score": case.score},
                                     aggregate_id=callback, role=case.caller)
        assert reply["ok"], reply

        async def revisited() -> bool:  # the policy's revisit (and follow-up) before time moves on
            types = [e["type"] for e in (await history(client, case.case_id))["events"]]
            return "complaint.revisited" in types and (case.satisfied or "complaint.follow_up_opened" in types)
        await wait_for(revisited)


def month_of(at: datetime) -> str:
    return at.astimezone(ZONE_INFO).strftime("%Y-%m")


def expected_figures(cases: list[Case], month: str) -> dict[str, Counter[str]]:
    """Per agent, what the test did in `month`, counted by the rules in ticketing/assessment.py."""
    found: dict[str, Counter[str]] = {}

    def count(person: str, figure: str, at: datetime, n: int = 1) -> None:
        if month_of(at) == month:
            found.setdefault(person, Counter())[figure] += n

    for case in cases:
        resolver = SUPERVISOR if case.escalated else case.resolver
        person_at_resolution = case.assignee or resolver
        if case.about_staff:
            count(case.about_staff, "disputes", case.registered_at)
        if case.escalated:
            count(case.assignee or case.registrar, "escalated", case.acknowledged_at)
        count(person_at_resolution, "handled", case.resolved_at)
        count(person_at_resolution, "first_contact_known", case.resolved_at)
        count(person_at_resolution, "first_contact_yes", case.resolved_at, int(case.first_contact))
        ack = case.acknowledged_at - case.registered_at <= timedelta(minutes=30)
        count(case.acknowledger, f"{'met' if ack else 'missed'}.first_response", case.acknowledged_at)
        for metric, limit in (("plan", timedelta(hours=4)), ("resolution", timedelta(hours=24))):
            met = case.resolved_at - case.registered_at <= limit
            count(person_at_resolution, f"{'met' if met else 'missed'}.{metric}", case.resolved_at)
        if case.callback == "done":
            count(person_at_resolution, "revisits", case.called_at)
            count(person_at_resolution, "score_sum", case.called_at, case.score)
            count(person_at_resolution, "satisfied", case.called_at, int(case.satisfied))
            if not case.satisfied:
                count(person_at_resolution, "follow_ups", case.called_at)
            count(case.caller, "callbacks_done", case.called_at)
            count(person_at_resolution, "met.callback", case.called_at)  # two hours after the resolution
            loop = case.called_at - case.registered_at <= timedelta(hours=24)
            count(person_at_resolution, f"{'met' if loop else 'missed'}.loop", case.called_at)
            count(case.caller, "met.first_response", case.called_at)  # the callback's own limits: within a day
            count(case.caller, "met.resolution", case.called_at)
        elif case.callback == "missed":
            count(case.caller, "callbacks_missed", case.called_at)
            count(case.caller, "met.first_response", case.called_at)  # the first attempt
        if case.reopened:
            reopened_at = case.resolved_at + timedelta(hours=3)
            count(person_at_resolution, "reopened", reopened_at)
            again = case.assignee or (SUPERVISOR if case.escalated or case.resolver == SUPERVISOR else case.person)
            count(again, "handled", case.reresolved_at)
            count(again, "first_contact_known", case.reresolved_at)
            count(again, "first_contact_yes", case.reresolved_at, int(case.first_contact))
            for metric, limit in (("plan", timedelta(hours=4)), ("resolution", timedelta(hours=24))):
                met = case.reresolved_at - reopened_at <= limit
                count(again, f"{'met' if met else 'missed'}.{metric}", case.reresolved_at)
    return {person: figures for person, figures in found.items() if person in AGENTS}


def score_of(figures: Counter[str], best: int) -> float:
    """The score by the test's own reading of the shipped rules file."""
    met = sum(n for k, n in figures.items() if k.startswith("met."))
    missed = sum(n for k, n in figures.items() if k.startswith("missed."))
    callbacks = figures["callbacks_done"] + figures["callbacks_missed"]
    shares = {"handled": figures["handled"] / best if best else None,
              "on_time": met / (met + missed) if met + missed else None,
              "satisfaction": figures["score_sum"] / figures["revisits"] / 100 if figures["revisits"] else None,
              "first_contact": (figures["first_contact_yes"] / figures["first_contact_known"]
                                if figures["first_contact_known"] else None),
              "callbacks": figures["callbacks_done"] / callbacks if callbacks else None}
    weights = {k: w for k, w in RULES["weights"].items() if shares[k] is not None}
    average = 100 * sum(w * shares[k] for k, w in weights.items()) / sum(weights.values())
    deducted = sum(points * figures[name] for name, points in RULES["deductions"].items())
    return round(min(100.0, max(0.0, average - deducted)), 1)


def cards(figures: dict[str, Counter[str]]) -> dict[str, tuple[float, str, int]]:
    """person -> (score, grade, rank)."""
    best = max((f["handled"] for f in figures.values()), default=0)
    scores = {person: score_of(f, best) for person, f in figures.items()}
    grades = RULES["grade"]
    return {person: (score, next(g["name"] for g in grades if score >= g["min"]),
                     1 + sum(other > score for other in scores.values())) for person, score in scores.items()}


ZONE_INFO = ZoneInfo(ZONE)
OCTOBER_START = datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
NOVEMBER_START = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)


async def test_the_monthly_scorecards_match_what_the_agents_did(
        runtime: Runtime, client: Client, clock: FakeClock, settings: Settings) -> None:
    rng = random.Random(20261126)
    october, november = plan(rng, OCTOBER_START, 30), plan(rng, NOVEMBER_START, 30)
    clock.now = OCTOBER_START
    customer = (await client.command("customer", "register", customer_data()))["aggregate_id"]
    await drive(october + november, client, clock, runtime, customer)
    clock.now = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)

    want = {month: expected_figures(october + november, month) for month in ("2026-10", "2026-11")}
    want_cards = {month: cards(figures) for month, figures in want.items()}

    head = runtime.store.max_position()

    async def caught_up() -> dict[str, Any] | None:  # every read model has every event
        marks = [marks_of(runtime.readmodels, p.name)[0] for p in projections(POLICY)]
        if min(marks) < head:
            return None
        reply = await client.query("staff.assessment", {"period": "2026-11"}, role="supervisor")
        assert reply["ok"], reply
        return reply
    reply = await wait_for(caught_up, timeout=30)

    assert [c["team"] for c in reply["cards"]] == ["agent"] * len(want["2026-11"])
    assert reply["months"] == ["2026-11"] and reply["timezone"] == ZONE
    for card in reply["cards"]:
        mine, f = want["2026-11"][card["person"]], card["figures"]
        assert f["handled"]["complaint"] == mine["handled"], card["person"]
        assert f["first_contact"] == mine["first_contact_yes"] and f["first_contact_known"] == mine[
            "first_contact_known"]
        assert f["callbacks_on_their_cases"] == mine["revisits"]
        assert f["average_score"] == (pytest.approx(mine["score_sum"] / mine["revisits"]) if mine["revisits"]
                                      else None)
        assert f["satisfied_share"] == (pytest.approx(mine["satisfied"] / mine["revisits"]) if mine["revisits"]
                                        else None)
        for name in ("reopened", "follow_ups", "escalated", "disputes", "callbacks_done", "callbacks_missed"):
            assert f[name] == mine[name], (card["person"], name)
        limits = {m: (c["met"], c["missed"]) for m, c in f["limits"].items()}
        assert limits == {m: (mine[f"met.{m}"], mine[f"missed.{m}"]) for m in
                          ("first_response", "plan", "resolution", "callback", "loop")
                          if mine[f"met.{m}"] or mine[f"missed.{m}"]}, card["person"]
        assert (card["score"], card["grade"], card["rank"]) == want_cards["2026-11"][card["person"]], card
        assert card["team_size"] == len(want["2026-11"])

    # The streaks: first place / the failing grade in October and November both.
    for card in reply["cards"]:
        october_card, november_card = want_cards["2026-10"].get(card["person"]), want_cards["2026-11"][card["person"]]
        first = 0 if november_card[2] != 1 else 1 + (october_card is not None and october_card[2] == 1)
        failing = 0 if november_card[1] != "E" else 1 + (october_card is not None and october_card[1] == "E")
        assert (card["first_place_months"], card["failing_months"]) == (first, failing), card["person"]
        assert not card["bonus"] and not card["post_at_risk"]  # three months running are needed
    assert max(c["first_place_months"] for c in reply["cards"]) == 2, "the seed should give a two-month streak"
    assert len({c["grade"] for c in reply["cards"]}) > 1

    # The quarter: the months summed, scored once.
    quarter = await client.query("staff.assessment", {"period": "2026-Q4"}, role="manager")
    summed = {p: want["2026-10"].get(p, Counter()) + want["2026-11"].get(p, Counter())
              for p in set(want["2026-10"]) | set(want["2026-11"])}
    assert {c["person"]: (c["score"], c["grade"], c["rank"]) for c in quarter["cards"]} == cards(summed)
    assert quarter["months"] == ["2026-10", "2026-11", "2026-12"]
    streaks = {c["person"]: (c["first_place_months"], c["failing_months"]) for c in reply["cards"]}
    assert {c["person"]: (c["first_place_months"], c["failing_months"]) for c in quarter["cards"]} == streaks, \
        "a quarter under way has the streaks of its latest month with figures (November)"

    # An agent sees their own card only; another's is refused.
    own = await client.query("staff.assessment", {"period": "2026-11"}, role="agent-2")
    assert [c["person"] for c in own["cards"]] == ["agent-2"]
    assert own["cards"][0] == next(c for c in reply["cards"] if c["person"] == "agent-2")
    other = await client.query("staff.assessment", {"period": "2026-11", "person": "agent-1"}, role="agent-2")
    assert other["error"]["code"] == "forbidden"
    one = await client.query("staff.assessment", {"period": "2026-11", "person": "agent-1"}, role="auditor")
    assert [c["person"] for c in one["cards"]] == ["agent-1"]
    bad = await client.query("staff.assessment", {"period": "2026-13"}, role="supervisor")
    assert bad["error"]["code"] == "validation_error"

    # The CLI, as the local operator (a manager): the table, and the reply itself with --json.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env["TICKETING_DATA_DIR"] = str(settings.data_dir)
    ticketing = str(Path(sys.executable).parent / "ticketing")
    shown = await asyncio.to_thread(subprocess.run, [ticketing, "staff", "--month", "2026-11"], env=env,
                                    capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert all(person in shown.stdout for person in want["2026-11"]) and "grades: A >= 90" in shown.stdout, shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80, shown.stdout
    one_json = await asyncio.to_thread(subprocess.run, [ticketing, "staff", "--month", "2026-11", "--agent",
                                                        "agent-3", "--json"], env=env, capture_output=True,
                                       text=True, timeout=120, check=False)
    assert orjson.loads(one_json.stdout)["cards"] == [c for c in reply["cards"] if c["person"] == "agent-3"]

    # The read models rebuilt from the store give the same cards.
    every = [p for p in projections(POLICY, ZONE_INFO) if p.name in ("staff", "sla")]
    await asyncio.to_thread(rebuild_projections, runtime.store, runtime.readmodels, every)
    again = await client.query("staff.assessment", {"period": "2026-11"}, role="supervisor")
    assert again == reply
