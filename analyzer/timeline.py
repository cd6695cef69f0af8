"""Readable verdict timelines of replays, for the terminal."""

from __future__ import annotations

from analyzer.replay import ReplayResult

_MARKS = {"pass": "✓", "inconclusive": "?", "fail": "✗"}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes:d}:{secs:02d}"


def format_timeline(result: ReplayResult) -> str:
    """A readable verdict timeline: one mark per evaluation, then the outcome and why."""
    marks = "".join(_MARKS[e.verdict] for e in result.evaluations)
    if result.first_fail_at is not None:
        outcome = f"fail at {_clock(result.first_fail_at)}"
    else:
        outcome = f"{result.verdict} at the promotion gate ({_clock(result.seconds_judged)})"
    lines = [f"{result.name}", f"  {marks}", f"  → {outcome}: {result.last.reason}"]
    for m in result.last.metrics:
        lines.append(f"    {m.name:<14} {m.classification:<7} {m.reason}")
    return "\n".join(lines)
