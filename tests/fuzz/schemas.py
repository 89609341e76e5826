"""Hypothesis strategies from the JSON Schemas in contracts/schemas/: values
the schema admits, and near misses (a field missing, one too many, a value
of the wrong type, extreme numbers, years 1 and 9999, control characters, a
string of a megabyte). Covers what pydantic writes: types, enums, anyOf,
$ref into $defs, formats uuid/date/date-time, pattern, lengths, bounds."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SCHEMAS = Path(__file__).parents[2] / "contracts" / "schemas"

NASTY: list[Any] = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**30, 1e308, -1e-308, 0.5, "", " ", "\x00", "\x01\x1f\x7f",
    "line\nbreak\ttab", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01", "9999-12-31",
    "2026-02-30T25:61:00Z", "2026-11-25T02:05:15", "not-a-uuid", "00000000-0000-0000-0000-000000000000",
    "客户投诉" * 50, "🙂" * 100, "x" * 5000, [], [None], {}, {"nested": {"deeper": [1, 2, 3]}},
]
MEGABYTE = "m" * 1_000_000


def load(kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / kind / f"{name}.json").read_text()))


def valid(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return valid(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return st.one_of([valid(option, defs) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(valid(schema.get("items", {}), defs), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 5), 5))
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: valid(v, defs) for k, v in properties.items() if k in required},
            optional={k: valid(v, defs) for k, v in properties.items() if k not in required})
    return st.from_type(object).filter(lambda v: isinstance(v, (str, int, bool, type(None))))


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    form = schema.get("format")
    if form == "uuid":
        return st.uuids().map(str)
    if form == "date-time":
        return st.datetimes().map(lambda d: d.isoformat() + "Z")
    if form == "date":
        return st.dates().map(lambda d: d.isoformat())
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True)
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 60), 60)
    return st.text(string.printable + "客户投诉维修回访", min_size=low, max_size=max(low, high))


def near_valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid value, or one broken in one of the ways a careless or hostile sender breaks it."""
    base = valid(schema)
    keys = sorted(schema.get("properties", {}))
    broken = [
        base.map(lambda v: v if not isinstance(v, dict) or not v else {k: v[k] for k in list(v)[1:]}),
        base.map(lambda v: {**v, "unexpected_field": 1} if isinstance(v, dict) else v),
        st.sampled_from(NASTY),
    ]
    if keys:
        broken.append(st.tuples(base, st.sampled_from(keys), st.sampled_from([*NASTY, MEGABYTE])).map(
            lambda t: {**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[0]))
    return st.one_of(base, *broken)
