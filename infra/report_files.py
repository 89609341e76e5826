"""The quality report as files: a self-contained HTML page (charts as inline
SVG drawn by matplotlib; no script, no external file), the same figures as
JSON, and as CSV (one row per figure); with the period's staff assessment
when the reader may see it."""

from __future__ import annotations

import csv
import io
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape

from infra.auth.keys import write_secret
from infra.figures import FORMATS, share

CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei"]
TARGET_STYLE = {"color": "#c0392b", "linestyle": "--", "linewidth": 1.2}


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: without the XML prolog and doctype


def charts(report: dict[str, Any]) -> dict[str, str]:
    """Inline SVG charts, each with its handbook target drawn as a line."""
    import matplotlib

    matplotlib.use("Agg")
    # Text stays text in the SVG: the browser draws it with its own fonts,
    # so Chinese product and region names show (matplotlib's font has no CJK).
    matplotlib.rcParams["svg.fonttype"] = "none"
    # Measured with a CJK face where one is installed (labels then fit); the
    # browser draws the text either way, so a missing glyph in matplotlib's own
    # font is no fault of the report and no warning is shown for it.
    matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans", *CJK_FONTS]
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    drawn: dict[str, str] = {}
    targets = report["targets"]

    trend = report["satisfaction_trend"]
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    ax.plot(range(len(trend)), [w["average"] if w["average"] is not None else float("nan") for w in trend],
            marker="o", color="#2c7fb8", label="average score")
    ax.set_xticks(range(len(trend)), [w["week"] for w in trend], fontsize=8)
    ax.axhline(targets["satisfaction"], **TARGET_STYLE, label=f"target {targets['satisfaction']:.0f}")
    ax.set_ylim(0, 100)
    ax.set_title("Satisfaction by week")
    ax.legend(loc="lower right", fontsize=8)
    drawn["satisfaction"] = _svg(fig)
    plt.close(fig)

    limits = report["on_time"]
    names = list(limits)
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    rates = [100 * limits[n]["rate"] if limits[n]["rate"] is not None else 0 for n in names]
    bars = ax.bar(names, rates, color=["#2c7fb8" if r >= 100 * targets["on_time"] else "#e67e22" for r in rates])
    ax.bar_label(bars, labels=[share(limits[n]["rate"], limits[n]["met"] + limits[n]["missed"]) for n in names],
                 fontsize=8)
    ax.axhline(100 * targets["on_time"], **TARGET_STYLE, label=f"target {targets['on_time']:.0%}")
    ax.set_ylim(0, 105)
    ax.set_title("On time, per limit (%)")
    ax.legend(loc="lower right", fontsize=8)
    drawn["on_time"] = _svg(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 2.2))
    now, then = report["figures"]["first_contact_rate"], report["previous"]["first_contact_rate"]
    periods = [report["previous"]["period"], report["figures"]["period"]]
    values = [100 * (then or 0), 100 * (now or 0)]
    bars = ax.barh(periods, values, color=["#95a5a6", "#2c7fb8"])
    ax.bar_label(bars, labels=[share(then), share(now)], fontsize=8)
    ax.axvline(100 * targets["first_contact"], **TARGET_STYLE, label=f"target {targets['first_contact']:.0%}")
    ax.set_xlim(0, 100)
    ax.set_title("First-contact resolution (%)")
    ax.legend(loc="lower right", fontsize=8)
    drawn["first_contact"] = _svg(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(9.6, 2.6))
    for ax, (title, key) in zip(axes, (("Top categories", "categories"), ("Top products", "products"),
                                       ("Top regions", "regions")), strict=True):
        ranked = list(reversed(report["top"][key]))
        ax.barh([r["name"] for r in ranked], [r["count"] for r in ranked], color="#2c7fb8")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts of cases
    fig.tight_layout()
    drawn["top"] = _svg(fig)
    plt.close(fig)

    cards = (report.get("staff") or {}).get("cards") or []
    if cards:
        grades = report["staff"]["grades"]
        fig, ax = plt.subplots(figsize=(9.6, 0.4 * len(cards) + 1.2))
        labels = [f"{c['person']} ({c['team']})" for c in reversed(cards)]
        bars = ax.barh(labels, [c["score"] for c in reversed(cards)],
                       color=["#e67e22" if c["grade"] == grades[-1]["name"] else "#2c7fb8" for c in reversed(cards)])
        ax.bar_label(bars, labels=[f"{c['score']:.1f} {c['grade']}" for c in reversed(cards)], fontsize=8)
        for grade in grades[:-1]:
            ax.axvline(grade["min"], color="#95a5a6", linestyle=":", linewidth=1)
        ax.set_xlim(0, 105)
        ax.set_title("Staff assessment: score and grade")
        ax.tick_params(labelsize=8)
        drawn["staff"] = _svg(fig)
        plt.close(fig)
    return drawn


def rows(report: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(section, figure, value): the report flattened for the CSV file."""
    found: list[tuple[str, str, Any]] = [("period", "name", report["period"]),
                                         ("period", "start", report["start"]), ("period", "end", report["end"])]
    for section in ("figures", "previous"):
        for key, value in report[section].items():
            if isinstance(value, dict):
                found += [(section, f"{key}.{k}", v) for k, v in value.items()]
            elif key not in ("start", "end"):
                found.append((section, key, value))
    found += [("complaint_rate", key, report[key]) for key in
              ("complaint_rate", "complaint_rate_previous", "complaint_rate_change")]
    found += [("satisfaction_trend", w["week"], w["average"]) for w in report["satisfaction_trend"]]
    for metric, counts in report["on_time"].items():
        found += [("on_time", f"{metric}.{k}", v) for k, v in counts.items()]
    for key, ranked in report["top"].items():
        found += [(f"top_{key}", r["name"], r["count"]) for r in ranked]
    found += [("typical_case", c["case_id"], "; ".join(c["why"])) for c in report["typical_cases"]]
    found += [("miss", str(i + 1), text) for i, text in enumerate(report["misses"])]
    for card in (report.get("staff") or {}).get("cards") or []:
        found += [("staff", f"{card['person']}.{key}", card[key]) for key in
                  ("team", "rank", "team_size", "score", "grade", "first_place_months", "failing_months", "bonus",
                   "post_at_risk")]
        for key, value in card["figures"].items():
            if isinstance(value, dict):
                found += [("staff", f"{card['person']}.{key}.{k}", v if not isinstance(v, dict) else
                           f"{v['met']} met / {v['missed']} missed") for k, v in value.items()]
            else:
                found.append(("staff", f"{card['person']}.{key}", value))
    return found


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP, CSV injection)."""


def cell(value: Any) -> Any:
    """A value as a CSV cell that no spreadsheet runs: text beginning like a
    formula (a product named `=HYPERLINK(...)`, a region `+cmd|...`) gets a
    leading `'`, as OWASP advises; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write report-<period>.html, .json and .csv, readable by their owner
    only (they name staff and customers' cases); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stem = directory / f"report-{report['period']}"
    html, json_file, csv_file = stem.with_suffix(".html"), stem.with_suffix(".json"), stem.with_suffix(".csv")
    for path, content in ((html, html_page(report).encode()), (json_file, json_text(report)),
                          (csv_file, csv_text(report).encode())):
        write_secret(path, content)
    return [html, json_file, csv_file]


def context(report: dict[str, Any]) -> dict[str, Any]:
    """What the report's templates need beside the figures: the charts and the period's first and last day."""
    zone = ZoneInfo(report["timezone"])
    last_day = datetime.fromisoformat(report["end"]).astimezone(zone) - timedelta(days=1)
    dates = (datetime.fromisoformat(report["start"]).astimezone(zone).date(), last_day.date())
    return {"report": report, "charts": charts(report), "dates": dates}


def html_page(report: dict[str, Any]) -> str:
    environment = Environment(loader=PackageLoader("infra", "templates"), autoescape=select_autoescape())
    environment.globals.update(FORMATS)
    return environment.get_template("report.html").render(context(report))


def json_text(report: dict[str, Any]) -> bytes:
    return orjson.dumps(report, option=orjson.OPT_INDENT_2)


def csv_text(report: dict[str, Any]) -> str:
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["section", "figure", "value"])
    writer.writerows([cell(v) for v in row] for row in rows(report))
    return table.getvalue()
