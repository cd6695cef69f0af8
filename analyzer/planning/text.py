"""The plan as an operator reads it: one table per metric and traffic level, then the steps."""

from __future__ import annotations

from typing import Any

from analyzer.planning.steps import format_duration


def _time(seconds: float | None) -> str:
    return "never" if seconds is None else format_duration(seconds)


def format_plan(plan: dict[str, Any]) -> str:
    history = plan["history"]
    lines = [f"history: {history['source']}, {history['hours']} h; quiet hour "
             f"{history['quiet_requests_per_second']:g} req/s, busy hour "
             f"{history['busy_requests_per_second']:g} req/s",
             f"config: {plan['config']} (alpha {plan['alpha']:g}, gate alpha "
             f"{plan['gate_alpha']:g}), one look per "
             f"{plan['interval_seconds']:g} s",
             "steps: " + ", ".join(f"{s['weight']:g}% for {format_duration(s['seconds'])}"
                                   for s in plan["steps"])]
    regressions = plan["regressions"]
    for metric in plan["metrics"]:
        margin = metric["margin"]
        absolute = margin["allowed_absolute_increase"]
        region = f"{margin['allowed_increase']:g}x" + (
            f", +{absolute * 100:g} points" if absolute else "")
        lines += ["", f"{metric['name']} ({'gated' if metric['gated'] else 'not gated'}; "
                      f"{metric['events']} at {metric['event_rate']:.3%} of requests; "
                      f"allowed max({region}))"]
        for level in ("quiet", "busy"):
            part = metric[level]
            if level == "busy" and part == metric["quiet"]:
                lines.append("  busy hour: as the quiet hour (the history's rate is flat)")
                continue
            lines.append(f"  {level} hour, {part['requests_per_second']:g} req/s:")
            head = "".join(f" {'fail 95% ' + r:>14}" for r in regressions)
            lines.append(f"    {'weight':>6} {'duration':>9} {'canary req':>11} "
                         f"{'events':>8}{head} {'gate 50%':>10}")
            for step in part["steps"]:
                fails = "".join(f" {_time(step['fail_95_seconds'][r]):>14}"
                                for r in regressions)
                lines.append(f"    {step['weight']:>5g}% {format_duration(step['seconds']):>9} "
                             f"{step['canary_requests']:>11.0f} {step['canary_events']:>8.1f}"
                             f"{fails} {_time(step['gate_50_seconds']):>10}")
            ramp = part["ramp"]
            horizon = format_duration(plan["max_seconds"])
            fails = ", ".join(
                f"{r} fails (95%) by {_time(ramp['fail_95_seconds'][r])}"
                if ramp["fail_95_seconds"][r] is not None
                else f"{r}: fewer than 95% fail within {horizon}" for r in regressions)
            gate = ramp["gate_50_seconds"]
            passes = ("the gate never passes an equal canary" if gate is None else
                      f"the gate passes an equal canary by {_time(gate)} (median)")
            verdict = "decides" if ramp["gate_decides"] else "does NOT decide"
            lines.append(f"    whole ramp ({format_duration(ramp['seconds'])}): {fails}; "
                         f"{passes}: {verdict}")
    suggestion = plan["suggestion"]
    lines.append("")
    if suggestion["decides"]:
        lines.append(f"suggested steps (the gate decides at the quiet hour, "
                     f"{format_duration(suggestion['seconds'])} in all):")
        lines += ["  " + line for line in suggestion["yaml"].splitlines()]
    else:
        lines.append("no ramp with these weights lets the gate decide; what would:")
        lines += [f"  - {text}" for text in suggestion["advice"]]
    lines += [f"note: {note}" for note in plan["notes"]]
    return "\n".join(lines)
