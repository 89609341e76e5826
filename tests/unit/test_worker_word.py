"""What serve knows of its worker's processes: each part's last word, and
which parts have gone silent (`infra.runtime.health.WorkerWord`)."""

from __future__ import annotations

import orjson

from infra.runtime.health import WORKER_SILENT_SECONDS, WorkerWord


def said(parts: list[str], **status: object) -> bytes:
    return orjson.dumps({"parts": parts, **status})


def test_the_worker_is_up_while_each_part_is_heard_from_whichever_process_runs_it() -> None:
    now = [100.0]
    word = WorkerWord(("projections", "relay"), clock=lambda: now[0])
    assert word.current() is None, "nothing heard"
    word.hear(said(["projections"], projections={"sla": {"applied": 3}}))
    assert word.current() == {"parts": ["projections", "relay"], "silent": ["relay"],
                              "projections": {"sla": {"applied": 3}}}
    word.hear(said(["relay"], relay={"position": 7}))
    assert word.current() == {"parts": ["projections", "relay"], "silent": [],
                              "projections": {"sla": {"applied": 3}}, "relay": {"position": 7}}

    now[0] += WORKER_SILENT_SECONDS + 0.5  # the projections' process died; the relay's goes on
    word.hear(said(["relay"], relay={"position": 9}))
    assert word.current() == {"parts": ["projections", "relay"], "silent": ["projections"], "relay": {"position": 9}}
    now[0] += WORKER_SILENT_SECONDS + 0.5
    assert word.current() is None, "silent all"


def test_one_process_running_every_part_speaks_for_all() -> None:
    word = WorkerWord(("projections", "relay"), clock=lambda: 0.0)
    word.hear(said(["projections", "relay"], relay={"position": 1}, projections={}))
    assert word.silent() == []
