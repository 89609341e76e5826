"""Write the JSON Schemas of every message to contracts/schemas/.

    python -m contracts.generate          # write
    python -m contracts.generate --check  # exit 1 when the files drift
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from contracts.catalog import schemas

SCHEMA_DIR = Path(__file__).parent / "schemas"


def rendered() -> dict[Path, bytes]:
    return {
        SCHEMA_DIR / path: orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        for path, schema in schemas().items()
    }


def drift() -> list[str]:
    expected = rendered()
    on_disk = {p for p in SCHEMA_DIR.rglob("*.json")}
    problems = [f"missing or stale: {p.relative_to(SCHEMA_DIR)}"
                for p, body in expected.items() if not p.exists() or p.read_bytes() != body]
    problems += [f"no model for: {p.relative_to(SCHEMA_DIR)}" for p in on_disk - expected.keys()]
    return sorted(problems)


def main() -> int:
    if "--check" in sys.argv:
        problems = drift()
        print("\n".join(problems) or "schemas are up to date")
        return 1 if problems else 0
    for stale in SCHEMA_DIR.rglob("*.json"):
        stale.unlink()
    for path, body in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    print(f"wrote {len(rendered())} schemas to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
