"""The README's walk-through, run as written: each line of "Using it" in
order, in a shell, against a real `serve` started as `make run` starts it,
with the ids and times a person would read off the output before. A line
the product no longer takes, or an id the output no longer shows, fails it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.processes import Serve

ROOT = Path(__file__).parents[2]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PASSWORD = "correct horse battery"


def walk_through() -> list[str]:
    """The commands of the README's "Using it" block, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Using it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if pending.strip():
            commands.append(pending)
        pending = ""
    return commands


def test_the_readme_walk_through_runs_as_written(tmp_path: Path) -> None:
    serve = Serve(tmp_path, {"TICKETING_METRICS_PORT": "0", "TICKETING_AUDIT_ANCHOR_SECONDS": "1"})
    try:
        serve.wait_ready(tmp_path / "var", timeout=60)
        known: dict[str, str] = {}
        commands = walk_through()
        assert len(commands) >= 20 and all(c.startswith("ticketing ") for c in commands), commands
        for command in commands:
            output = run(command, known, tmp_path)
            learn(command, output, known)
        assert {"CUSTOMER_ID", "CASE_ID", "CALLBACK_ID", "TIME"} <= set(known)
    finally:
        serve.interrupt()
        serve.log.close()


def run(command: str, known: dict[str, str], cwd: Path) -> str:
    """The command's output; run again for a while when what it should show
    is not there yet (the policies act just after a reply), as a person would."""
    command = without_comment(command)
    for name in re.findall(r"\b[A-Z][A-Z_]*_ID\b|\bTIME\b", command):
        assert name in known, f"{name} is used before any command showed it: {command}"
        command = re.sub(rf"\b{name}\b", known[name], command)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env |= {"PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}", "COLUMNS": "80"}
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, input=f"{PASSWORD}\n{PASSWORD}\n",
                              capture_output=True, text=True, timeout=120, check=False)
        output = done.stdout + done.stderr
        if done.returncode == 0 and not still_to_come(command, output):
            return output
        if time.monotonic() > deadline:
            raise AssertionError(f"`{command}` exited {done.returncode}:\n{output}")
        time.sleep(0.5)


def without_comment(command: str) -> str:
    """The command without its `# ...` remark (a # inside quotes stays)."""
    quote = ""
    for i, char in enumerate(command):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or command[i - 1].isspace()):
            return command[:i].rstrip()
    return command


def still_to_come(command: str, output: str) -> bool:
    """What the walk-through says the command shows, and it does not show yet."""
    if command.startswith("ticketing history") and "--at" not in command:
        resolved = "complaint.resolved" in output
        if resolved and "callback: callback" not in output:
            return True  # the callback policy schedules it just after the resolution
        if "callback.completed" in output or "complaint.revisited" in output:
            return "follow up: complaint" not in output and "callback of:" not in output
    return False


def learn(command: str, output: str, known: dict[str, str]) -> None:
    """The ids and times a person reads off the output, under the README's names."""
    if command.startswith("ticketing send customer register"):
        known["CUSTOMER_ID"] = orjson.loads(output)["aggregate_id"]
    elif command.startswith("ticketing send complaint register"):
        known["CASE_ID"] = orjson.loads(output)["aggregate_id"]
    elif command.startswith("ticketing history CASE_ID"):
        if found := re.search(rf"callback: callback ({UUID})", output):
            known["CALLBACK_ID"] = found.group(1)
        if found := re.search(r"v2 (\S+)\s+complaint\.acknowledged", output):
            known["TIME"] = found.group(1)
    if "--at" in command:
        assert "complaint.acknowledged" in output and "complaint.resolved" not in output, output
