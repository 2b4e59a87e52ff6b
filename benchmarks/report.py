"""Results of a run and their rendering into docs/performance.md.

Every figure is a measurement (median and p99 over repeated runs) beside a baseline
measured in the same run, their ratio, the target it is held to, and the peak resident
memory of the server process that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.support import Samples


@dataclass
class Figure:
    name: str
    unit: str  # "ms", "s", "req/s/core", "MiB"
    value: Samples
    baseline_name: str
    baseline: Samples | None
    target: str
    # Decides whether the target is met from (median, p99); None: no target.
    check: Callable[[Figure], bool] | None
    peak_rss_mib: float | None
    note: str = ""
    # The latency column: "p50 / p99" of requests (throughput figures); by default the
    # p50 and p99 of `value` when it is a time.
    latency_text: str = ""
    # The issue's wording of the target this figure answers ("" for the suite's own
    # figures): such figures are listed in the report's summary too.
    issue: str = ""

    @property
    def ratio(self) -> float:
        if self.baseline is None or not self.baseline.median:
            return float("nan")
        return self.value.median / self.baseline.median

    @property
    def met(self) -> bool | None:
        return None if self.check is None else self.check(self)


@dataclass
class Section:
    title: str
    intro: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # why a target was missed
    extra: list[str] = field(default_factory=list)  # markdown after the notes


def _num(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "ms":
        if value < 1:
            return f"{value:.3f} ms"
        return f"{value:.1f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:,.0f} s"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    if unit == "GPUs":
        return f"{value:,.0f} GPUs"
    if unit.startswith("req/s"):
        return f"{value:,.0f}"
    return f"{value:.3g} {unit}"


def _verdict(figure: Figure) -> str:
    met = figure.met
    return "—" if met is None else ("**met**" if met else "**MISSED**")


def _latency(f: Figure) -> str:
    if f.latency_text:
        return f.latency_text
    if f.unit in ("ms", "s"):
        return f"{_num(f.value.median, f.unit)} / {_num(f.value.p99, f.unit)}"
    return "—"


def _ratio(f: Figure) -> str:
    return "n/a" if math.isnan(f.ratio) else f"{f.ratio:.2f}x"


def render_section(section: Section) -> str:
    lines = [f"## {section.title}", "", section.intro.strip(), ""]
    lines += [
        "| Figure | Target | Median | p50 / p99 | n | Baseline (same run) | Baseline median "
        "| Ratio | Server peak RSS | Met |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for f in section.figures:
        base = f.baseline
        lines.append(
            "| "
            + " | ".join(
                [
                    f.name,
                    f.target or "—",
                    _num(f.value.median, f.unit),
                    _latency(f),
                    str(len(f.value)),
                    f.baseline_name or "—",
                    _num(base.median, f.unit) if base else "—",
                    _ratio(f),
                    _num(f.peak_rss_mib, "MiB") if f.peak_rss_mib is not None else "—",
                    _verdict(f),
                ]
            )
            + " |"
        )
    lines.append("")
    for f in section.figures:
        if f.note:
            lines.append(f"- *{f.name}*: {f.note}")
    for note in section.notes:
        lines.append(f"- {note}")
    lines.append("")
    if section.extra:
        lines += [*section.extra, ""]
    return "\n".join(lines)


def issue_table(sections: list[Section]) -> list[str]:
    """One row per figure that answers one of the issue's targets."""
    rows = [
        "| Issue target | Measured | Baseline (same run) | Ratio | p50 / p99 | Peak RSS | Met |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for s in sections:
        for f in s.figures:
            if not f.issue:
                continue
            base = f"{f.baseline_name}: {_num(f.baseline.median, f.unit)}" if f.baseline else "—"
            rss = _num(f.peak_rss_mib, "MiB") if f.peak_rss_mib is not None else "—"
            rows.append(
                f"| {f.issue} | {f.name}: {_num(f.value.median, f.unit)} | {base} | "
                f"{_ratio(f)} | {_latency(f)} | {rss} | {_verdict(f)} |"
            )
    return rows


def _number(heading: str) -> int | None:
    head = heading.removeprefix("## ").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def render(
    *,
    machine: dict[str, str],
    sections: list[Section],
    quick: bool,
    wall_seconds: float,
    command: str,
    load_tool: str,
    changes: str,
) -> str:
    missed = [(s.title, f) for s in sections for f in s.figures if f.met is False]
    explained = [m for s in sections for m in s.misses]
    head = [
        "# Performance",
        "",
        "Written by the benchmark suite (`benchmarks/`); do not edit by hand: run "
        f"`{command}` and commit the result. "
        + (
            "**This is a `--quick` smoke run at toy sizes: its numbers mean nothing.**"
            if quick
            else ""
        ),
        "",
        "## The machine and the run",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores (from /proc/cpuinfo); "
        f"memory {machine['memory']}",
        f"- Python {machine['python']} on {machine['platform']}",
        f"- Date: {machine['date']}; load average (1, 5, 15 minutes) at start "
        f"{machine['load_at_start']}, at the end {machine.get('load_at_end', 'n/a')}; "
        f"1-minute load average during the run, every 10 s: {machine.get('load_during', 'n/a')}",
        f"- Load generator: {load_tool}; whole run: {wall_seconds / 60:.1f} minutes",
        "",
        "Machines are noisy (this one is shared and has two cores, so the load generator "
        "competes with the server): read the medians and the ratios to the baselines measured "
        "in the same run, not single numbers. p99 is nearest-rank; with fewer than 100 "
        "samples it is the maximum. Server peak RSS is `VmHWM` of the server process from "
        "/proc/<pid>/status at the end of the figure (its high-water mark, so it includes "
        "start-up and every request before; section 1 resets it once the server answers, so "
        "its peaks are those of the requests).",
        "",
        "## Summary",
        "",
    ]
    if missed:
        head.append("Targets missed in this run:")
        head.append("")
        for title, f in missed:
            head.append(f"- {title}: {f.name} (target {f.target})")
        for reason in explained:
            head.append(f"  - {reason}")
    else:
        head.append("Every target with a number was met in this run.")
    head += ["", "The issue's targets, as measured in this run:", "", *issue_table(sections), ""]
    numbered: list[tuple[int, str]] = [
        (_number("## " + s.title) or 0, render_section(s)) for s in sections
    ]
    numbered.sort(key=lambda item: item[0])
    body = [text for _, text in numbered]
    tail = ["## What the numbers changed in the code", "", changes.strip(), ""]
    return "\n".join(head + body + tail)


def _split_sections(text: str) -> list[tuple[str, str]]:
    """(heading line, whole text) of each `## ` part of a report; the head has heading ''."""
    parts: list[tuple[str, str]] = []
    current: list[str] = []
    heading = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            parts.append((heading, "".join(current)))
            heading, current = line.strip(), []
        current.append(line)
    parts.append((heading, "".join(current)))
    return parts


def splice(existing: str, sections: list[Section], *, machine: dict[str, str], command: str) -> str:
    """`existing` with `sections` put in place of those of the same title (new ones go
    before the closing "What the numbers changed" part); every other part is kept."""
    stamp = (
        f"*Measured by `{command}` on {machine['date']} ({machine['cpu']}, "
        f"{machine['cores']} cores, load average {machine['load_at_start']}); the other "
        "sections come from an earlier run.*"
    )
    fresh = {
        f"## {s.title}": render_section(s).replace("\n", "\n" + stamp + "\n\n", 1) for s in sections
    }
    parts = _split_sections(existing)
    out: list[str] = []
    placed: set[str] = set()
    for heading, body in parts:
        if heading.startswith("## What the numbers changed"):
            out += [fresh[h] + "\n" for h in fresh if h not in placed]
            placed |= set(fresh)
        if heading in fresh:
            out.append(fresh[heading] + "\n")
            placed.add(heading)
        else:
            out.append(body)
    out += [fresh[h] + "\n" for h in fresh if h not in placed]
    missed = [f for s in sections for f in s.figures if f.met is False]
    text = _drop_summary_lines("".join(out), [f"- {s.title}: " for s in sections])
    if missed:
        note = "".join(
            f"- {s.title}: {f.name} (target {f.target})\n"
            for s in sections
            for f in s.figures
            if f.met is False
        )
        note += "".join(f"  - {reason}\n" for s in sections for reason in s.misses)
        head = "Targets missed in this run:\n\n"
        if head in text:
            text = text.replace(head, head + note, 1)
        else:
            text = text.replace("Every target with a number was met in this run.\n", head + note, 1)
    return text


def _drop_summary_lines(text: str, prefixes: list[str]) -> str:
    """`text` without the summary's entries (and their indented reasons) of `prefixes`."""
    lines = text.split("\n")
    kept: list[str] = []
    dropping = False
    for line in lines:
        if any(line.startswith(p) for p in prefixes):
            dropping = True
            continue
        if dropping and line.startswith("  - "):
            continue
        dropping = False
        kept.append(line)
    return "\n".join(kept)
