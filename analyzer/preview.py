"""A static PNG of one analysis, for places where Grafana is not: issues, chat, docs, audits.

The picture is drawn from the analysis detail the API returns (``GET /api/v1/analyses/{id}``),
i.e. from the stored evaluations, so it shows what the service actually answered at each look
rather than a re-computation: verdict timeline, score, per-metric effect with its interval
band and the allowed margin, per-metric e-value (log scale) with the rejection threshold, and
the canary weight beside the share of requests the canary really got.

Command: ``canary-analyzer preview (--file F | --url U [--token-file T]) -o OUT.png``. A
service started with ``--token-file`` answers ``/api/v1/*`` only with its bearer token, so
``preview`` sends the one in ``--token-file`` (the same file, e.g. the mounted Secret) as
Argo and every other client do.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

VERDICT_COLOURS = {"pass": "#37872d", "inconclusive": "#e0b400", "fail": "#c4162a"}
EFFECT_LIMITS = (0.1, 30.0)
"""Effect axis range: interval bounds of 0 or ``None`` (unbounded) are clipped into it."""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def load_detail(*, file: str | Path | None = None, url: str | None = None,
                token: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
    """The analysis detail JSON from a file or from the service (``…/api/v1/analyses/{id}``),
    sending ``token`` as ``Authorization: Bearer`` when given."""
    if (file is None) == (url is None):
        raise ValueError("give exactly one of file and url")
    if file is not None:
        return json.loads(Path(file).read_text(encoding="utf-8"))
    assert url is not None
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url!r}")
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def allowed_margins(detail: Mapping[str, Any]) -> dict[str, float]:
    """The allowed canary/baseline ratio per metric, as the stored answers state it (each
    metric's ``allowed``); the latest evaluation's value wins."""
    margins: dict[str, float] = {}
    for evaluation in detail.get("evaluations", []):
        for metric in evaluation.get("response", {}).get("metrics", []):
            value = metric.get("allowed")
            if isinstance(value, int | float) and math.isfinite(value):
                margins[str(metric.get("name"))] = float(value)
    return margins


def _series(detail: Mapping[str, Any]) -> dict[str, Any]:
    """Per-evaluation columns, x in minutes since the analysis start (data time, not call
    time: replays and audits judge the past)."""
    evaluations = detail.get("evaluations", [])
    if not evaluations:
        raise ValueError(f"analysis {detail.get('id')!r} has no evaluations")
    origin = _time(detail["start"])
    x = [(_time(e["window_end"]) - origin).total_seconds() / 60 for e in evaluations]
    metrics: dict[str, dict[str, list[float | None]]] = {}
    for i, evaluation in enumerate(evaluations):
        for metric in evaluation.get("response", {}).get("metrics", []):
            cols = metrics.setdefault(metric["name"], {k: [None] * len(evaluations) for k in (
                "effect", "low", "high", "e_value", "threshold")})
            interval = metric.get("interval") or [None, None]
            cols["effect"][i] = _finite(metric.get("effect"))
            cols["low"][i] = _finite(interval[0])
            cols["high"][i] = _finite(interval[1])
            cols["e_value"][i] = _finite(metric.get("e_value"))
            cols["threshold"][i] = _finite(metric.get("threshold"))
    traffic = [e.get("response", {}).get("traffic", {}) for e in evaluations]
    return {
        "x": x,
        "verdicts": [e["verdict"] for e in evaluations],
        "score": [_finite(e.get("score")) for e in evaluations],
        "weight": [_finite(t.get("canary_weight")) for t in traffic],
        "share": [None if (s := _finite(t.get("observed_canary_share"))) is None else 100 * s
                  for t in traffic],
        "metrics": metrics,
    }


def _nan(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def render(detail: Mapping[str, Any], output: str | Path, *, dpi: int = 90) -> Path:
    """Draws the five panels of ``detail`` into a PNG at ``output`` and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    data = _series(detail)
    x = data["x"]
    margins = allowed_margins(detail)
    fig, axes = plt.subplots(5, 1, figsize=(10, 12.5), sharex=True,
                             gridspec_kw={"height_ratios": [0.55, 1, 1.4, 1.4, 1]})
    timeline, score_ax, effect_ax, evalue_ax, traffic_ax = axes
    last = detail["evaluations"][-1]
    fig.suptitle(f"{detail.get('namespace')}/{detail.get('rollout')} — "
                 f"{len(x)} evaluations, last verdict: {last['verdict']}\n"
                 f"analysis {detail.get('id')}, config {detail.get('config')}, "
                 f"start {detail.get('start')}", fontsize=11)

    # Verdict timeline: each look colours the data interval it added.
    lefts = [0.0, *x[:-1]]
    for left, right, verdict in zip(lefts, x, data["verdicts"], strict=True):
        timeline.axvspan(left, right, color=VERDICT_COLOURS.get(verdict, "grey"), lw=0)
    timeline.set_yticks([])
    timeline.set_title("Verdict per evaluation", loc="left", fontsize=10)
    timeline.legend(handles=[Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()],
                    loc="upper left", ncol=3, fontsize=8, framealpha=0.9)

    score_ax.step(x, _nan(data["score"]), where="pre", color="#1f60c4", marker="o", ms=3)
    score_ax.set_ylim(-5, 105)
    score_ax.set_ylabel("score")
    score_ax.set_title("Score (0–100)", loc="left", fontsize=10)

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    low_clip, high_clip = EFFECT_LIMITS
    for n, (name, cols) in enumerate(sorted(data["metrics"].items())):
        colour = colours[n % len(colours)]
        low = [low_clip if v is None or v < low_clip else min(v, high_clip)
               for v in cols["low"]]
        high = [high_clip if v is None else max(min(v, high_clip), low_clip)
                for v in cols["high"]]
        has = [e is not None for e in cols["effect"]]
        effect_ax.fill_between(x, low, high, where=has, color=colour, alpha=0.12)
        effect_ax.plot(x, _nan(cols["effect"]), color=colour, marker="o", ms=3, label=name)
        if name in margins:
            effect_ax.axhline(margins[name], color=colour, ls="--", lw=1,
                              label=f"{name} allowed {margins[name]:g}")
        evalue_ax.plot(x, _nan(cols["e_value"]), color=colour, marker="o", ms=3, label=name)
    thresholds = {t for cols in data["metrics"].values() for t in cols["threshold"]
                  if t is not None}
    for t in sorted(thresholds):
        evalue_ax.axhline(t, color="#c4162a", ls="--", lw=1.2, label=f"threshold {t:.4g}")
    effect_ax.axhline(1.0, color="grey", lw=0.8)
    effect_ax.set_yscale("log")
    effect_ax.set_ylim(*EFFECT_LIMITS)
    effect_ax.set_ylabel("canary / baseline")
    effect_ax.set_title("Effect per metric (band: confidence sequence; dashed: allowed)",
                        loc="left", fontsize=10)
    effect_ax.legend(loc="upper left", fontsize=8, ncol=2)
    evalue_ax.set_yscale("log")
    evalue_ax.set_ylabel("e-value")
    evalue_ax.set_title("Evidence of harm per metric (fail at or above the threshold)",
                        loc="left", fontsize=10)
    evalue_ax.legend(loc="upper left", fontsize=8)

    traffic_ax.step(x, _nan(data["weight"]), where="pre", color="#8f3bb8",
                    label="canary weight (set)")
    traffic_ax.plot(x, _nan(data["share"]), color="#fa6400", marker="o", ms=3,
                    label="observed canary share of requests")
    traffic_ax.set_ylabel("%")
    traffic_ax.set_ylim(bottom=0)
    traffic_ax.set_title("Canary weight vs observed share", loc="left", fontsize=10)
    traffic_ax.legend(loc="lower right", fontsize=8)
    traffic_ax.set_xlabel("minutes since analysis start (data time)")
    traffic_ax.set_xlim(0, max(x) if max(x) > 0 else 1)
    for ax in axes[1:]:
        ax.grid(True, alpha=0.3)

    fig.tight_layout()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def read_token(path: str) -> str:
    """The API token from a file, as ``serve --token-file`` reads it (surrounding whitespace
    dropped: a Secret made with ``--from-file`` keeps the editor's newline)."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"--token-file {path}: cannot read: {reason}") from None
    if not token or "\n" in token:
        raise ValueError(f"--token-file {path}: expected one line holding the token")
    return token


def cmd_preview(args: argparse.Namespace) -> int:
    """Exit 2 for what the user must fix (a flag, a file, a 4xx such as a missing token),
    1 when the service could not be reached or failed."""
    try:
        if args.token_file and args.url is None:
            raise ValueError("--token-file: only with --url (a file needs no token)")
        token = read_token(args.token_file) if args.token_file else None
        detail = load_detail(file=args.file, url=args.url, token=token)
    except urllib.error.HTTPError as exc:
        hint = (" (pass the service's token with --token-file)"
                if exc.code == 401 and not args.token_file else "")
        print(f"canary-analyzer preview: {args.url}: HTTP {exc.code}: "
              f"{_error_text(exc)}{hint}", file=sys.stderr)
        return 2 if 400 <= exc.code < 500 else 1
    except urllib.error.URLError as exc:
        print(f"canary-analyzer preview: {args.url}: {exc.reason}", file=sys.stderr)
        return 1
    except ValueError as exc:  # also a file that is not JSON (JSONDecodeError)
        print(f"canary-analyzer preview: {exc}", file=sys.stderr)
        return 2
    out = render(detail, args.output)
    print(f"wrote {out}")
    return 0


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The API's ``error`` field when the answer has one, else the HTTP reason."""
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)


def add_preview_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers ``preview`` on the CLI's subparsers (``args.func`` runs it)."""
    parser = subparsers.add_parser(
        "preview", help="draw one analysis (API detail JSON) as a PNG")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="F", help="analysis detail JSON file")
    source.add_argument("--url", metavar="U",
                        help="e.g. http://canary-analyzer:8080/api/v1/analyses/ID")
    parser.add_argument("--token-file", metavar="PATH",
                        help="send 'Authorization: Bearer <the file's content>' with --url, "
                             "for a service started with --token-file")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.png")
    parser.set_defaults(func=cmd_preview)
    return parser


__all__ = ["add_preview_parser", "allowed_margins", "cmd_preview", "load_detail", "read_token",
           "render"]
