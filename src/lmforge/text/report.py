"""What a clean or curate run did, step by step: `<output>.report.json` and `<output>.report.md`.

Workers count into a `Tally` per chunk; the main process merges the chunks in input order, so the counts
and the examples (the first few per step) do not depend on the number of workers.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from lmforge.io import atomic_write_json, atomic_write_text

EXAMPLES = 3  # before/after examples kept per step
EXCERPT = 240  # characters of an example shown


def _excerpts(before: str, after: str) -> dict:
    """The stretch of `before` and `after` around their first difference."""
    i, step = 0, 256
    while i < min(len(before), len(after)) and before[i:i + step] == after[i:i + step]:
        i += step
    while i < min(len(before), len(after)) and before[i] == after[i]:
        i += 1
    start = max(0, i - EXCERPT // 4)

    def cut(s: str) -> str:
        return ("…" if start else "") + s[start:start + EXCERPT] + ("…" if len(s) > start + EXCERPT else "")

    return {"before": cut(before), "after": cut(after)}


@dataclass
class StepTally:
    """One step's (or filter's) effect: documents changed and removed, extra counts, first examples."""

    changed: int = 0
    removed: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)

    def note_changed(self, before: str, after: str) -> None:
        self.changed += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(_excerpts(before, after))

    def note_removed(self, before: str) -> None:
        self.removed += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(_excerpts(before, ""))

    def merge(self, other: "StepTally") -> None:
        self.changed += other.changed
        self.removed += other.removed
        self.counts.update(other.counts)
        self.examples.extend(other.examples[:EXAMPLES - len(self.examples)])


class Tally(dict[str, StepTally]):
    """StepTally per step name, in the order the steps first reported."""

    def __missing__(self, name: str) -> StepTally:
        self[name] = StepTally()
        return self[name]

    def merge(self, other: "Tally") -> None:
        for name, step in other.items():
            self[name].merge(step)


@dataclass
class Report:
    command: str
    source: str
    outputs: list[str]
    settings: dict
    workers: int
    partition: tuple[int, int] = (0, 1)
    documents_in: int = 0
    documents_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    read: dict = field(default_factory=dict)
    steps: Tally = field(default_factory=Tally)
    extra: dict = field(default_factory=dict)
    duration_s: float = 0.0
    written: list[Path] = field(default_factory=list)  # the report files, once written

    def as_dict(self) -> dict:
        # dataclasses.asdict would rebuild each Counter from (key, count) pairs, counting the pairs
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "written"}
        out["steps"] = {name: {"changed": s.changed, "removed": s.removed, "counts": dict(s.counts),
                               "examples": s.examples} for name, s in self.steps.items()}
        out["partition"] = {"index": self.partition[0], "count": self.partition[1]}
        seconds = max(self.duration_s, 1e-9)
        out["throughput"] = {"docs_per_s": round(self.documents_in / seconds, 1),
                             "mb_per_s": round(self.bytes_in / 1e6 / seconds, 2)}
        return out

    def markdown(self) -> str:
        d = self.as_dict()
        t = d["throughput"]
        lines = [f"# lmforge {self.command}: {self.source}", "",
                 f"Output: {', '.join(self.outputs)}  ",
                 f"Partition {self.partition[0]} of {self.partition[1]}, {self.workers} worker(s), "
                 f"{self.duration_s:.1f} s: {t['docs_per_s']:,} docs/s, {t['mb_per_s']} MB/s", "",
                 "| | documents | bytes (UTF-8 text) |", "|---|---:|---:|",
                 f"| in | {self.documents_in:,} | {self.bytes_in:,} |",
                 f"| out | {self.documents_out:,} | {self.bytes_out:,} |", "", "## Reading", "",
                 "| what | count |", "|---|---:|"]
        lines += [f"| {k.replace('_', ' ')} | {v if isinstance(v, str) else f'{v:,}'} |"
                  for k, v in self.read.items() if not isinstance(v, list)]
        where = self.read.get("malformed_where") or []
        if where:
            lines += ["", "Malformed records (first few): " + "; ".join(where)]
        lines += ["", "## Steps", "", "| step | changed | removed | other counts |", "|---|---:|---:|---|"]
        for name, s in self.steps.items():
            other = ", ".join(f"{k} {v:,}" for k, v in sorted(s.counts.items()))
            lines.append(f"| {name} | {s.changed:,} | {s.removed:,} | {other} |")
        if self.extra:
            lines += ["", "## Details", "", "```json", json.dumps(self.extra, indent=2, ensure_ascii=False), "```"]
        for name, s in self.steps.items():
            if s.examples:
                lines += ["", f"### {name}: examples", ""]
                for ex in s.examples:
                    lines += ["before:", "```", ex["before"].replace("```", "`‵`"), "```",
                              "after:", "```", ex["after"].replace("```", "`‵`") or "(removed)", "```"]
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """One line for the terminal."""
        mb = self.bytes_in / 1e6
        return (f"{self.command}: {self.documents_in:,} -> {self.documents_out:,} documents, {mb:,.1f} -> "
                f"{self.bytes_out / 1e6:,.1f} MB in {self.duration_s:.1f} s ({mb / max(self.duration_s, 1e-9):.1f} MB/s); "
                f"outputs: {', '.join(self.outputs)}; report: {self.written[1] if self.written else 'not written'}")

    def write(self, output: Path) -> None:
        """Write `<output stem>.report.json` and `.report.md` beside the output."""
        stem = output.name.removesuffix(output.suffix)
        self.written = [output.with_name(f"{stem}.report.json"), output.with_name(f"{stem}.report.md")]
        atomic_write_json(self.written[0], self.as_dict())
        atomic_write_text(self.written[1], self.markdown())
