"""One analysis: request → config, session, window, Prometheus, judge → the DESIGN §3 answer.

The API and the ``judge`` command both call ``Analyzer.run``, so a one-shot CLI answer and a
service answer for the same request are the same JSON. Everything that can make a request
hopeless (bad labels, unknown config, inline PromQL the server does not allow) is checked
before Prometheus is asked or anything is stored: such a request gets a 4xx naming the field
and leaves no trace. A session is stored only after the analysis succeeded, so a 503 leaves no
trace either.

A session is one canary revision of one rollout (the request's ``canary_revision``, else the
Rollout's current pod-template-hash when Kubernetes is configured), so a second release never
inherits the first one's window. Every call asks Prometheus, however short its window, so an
unreachable Prometheus is always a 503; a session's age is never an error (the most recent
``max_window`` is judged, and the answer says so).

A session's final intervals are stored (every ``PERSIST_EVERY`` of them) and kept in this
process between calls (``analyzer.continuation``), so the next call, here or on any replica,
reads from Prometheus only what came after them; ``Analyzer._read`` is that seam.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from analyzer.config import CanaryConfig, ConfigError, parse_config
from analyzer.continuation import PERSIST_EVERY, Continuations, Continued
from analyzer.judge.evaluate import JudgeInputError
from analyzer.judge.evidence import Missing
from analyzer.judge.results import Judgement
from analyzer.judge.series import RatioSeries
from analyzer.judge.stream import JudgeState
from analyzer.judge.traffic import TrafficCheck
from analyzer.mesh.facts import RolloutFacts
from analyzer.metrics.dataset import DatasetError, parse_time
from analyzer.metrics.intervals import StoredMismatch, fingerprint, head, pack, unpack
from analyzer.metrics.istio import (
    SERVICE_LABEL,
    Seam,
    SeamMismatch,
    SelectorError,
    SideSelectors,
    WindowData,
    window_intervals,
)
from analyzer.metrics.promql import Selector
from analyzer.metrics.source import IncrementalSource, MetricSource, Resume
from analyzer.report import (
    AnalysisReport,
    MetricReport,
    TrafficReport,
    rfc3339,
    to_wire,
)
from analyzer.request import JudgeRequest, RequestError
from analyzer.store import (
    AnalysisSession,
    SessionKey,
    Store,
    StoredHeader,
    StoredIntervals,
    selector_key,
)
from analyzer.telemetry import Telemetry

log = logging.getLogger("analyzer.analysis")
DEFAULT_STEP = 30.0
DEFAULT_FINAL_AFTER = timedelta(minutes=2)
"""How long after its end an interval is *final*: stored, never read again except as the
overlap. Later, its samples may still arrive (scrape and ingestion delays); until then it is
*provisional* and re-read on every call. See docs/reliability.md."""
SEAM_OVERLAP = 2
"""Final intervals re-read before the seam on every call: late samples for them are seen
(and the window read whole), not silently missed."""
DEFAULT_MAX_WINDOW = timedelta(hours=24)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UNSAFE_VALUE = re.compile(r'["\\{}`\x00-\x1f\x7f]')
"""Never in a real Istio label value; refused up front (the PromQL is escaped anyway)."""

RolloutSource = Callable[[str, str], RolloutFacts]
"""(namespace, rollout) → the canary weight and revision now, e.g. read from Kubernetes."""
NO_REVISION_NOTE = ("revisions are not told apart: pass canary_revision (Argo: valueFrom "
                    "podTemplateHashValue: Latest) or configure Kubernetes, or a later release "
                    "continues this analysis")


@dataclass(frozen=True)
class Resolved:
    """A request after validation: everything the analysis needs, nothing left to check."""

    namespace: str
    rollout: str
    sides: SideSelectors
    config: CanaryConfig
    config_name: str
    start: datetime | None
    end: datetime
    final: bool
    canary_weight: float | None
    canary_revision: str | None

    @property
    def selectors(self) -> str:
        return selector_key(self.sides.canary, self.sides.baseline, self.sides.reporter)


@dataclass(frozen=True)
class _Read:
    """A call's window, and what it continues: the judge ``state`` over its first ``reused``
    intervals (None: fold afresh), and ``final``, the final intervals to keep (None: keep
    nothing, e.g. a bounded window or no store)."""

    window: WindowData
    diagnoses: dict[str, Missing]
    digest: str
    reused: int = 0
    state: JudgeState | None = None
    final: int | None = None


def _time(value: float | str | None, field: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    try:
        return parse_time(value, field)
    except DatasetError as exc:
        raise RequestError(field, str(exc)) from None


def _labels(labels: Mapping[str, str] | None, service: str | None, side: str) -> dict[str, str]:
    field = side if labels is not None else f"{side}_service"
    if labels is not None and service is not None:
        raise RequestError(f"{side}_service", f"give {side} or {side}_service, not both")
    chosen = dict(labels) if labels is not None else (
        {SERVICE_LABEL: service} if service is not None else None)
    if not chosen:
        raise RequestError(side, f"{side} traffic is not selected: give {side} (label → value) "
                                 f"or {side}_service")
    if labels is None and not _DNS_LABEL.fullmatch(chosen[SERVICE_LABEL]):
        raise RequestError(field, f"{field}: {str(service)[:80]!r} is not a Kubernetes "
                                  f"Service name")
    for name, value in chosen.items():
        if _UNSAFE_VALUE.search(value):
            raise RequestError(f"{field}.{name}" if labels is not None else field,
                               f"{side} label {name!r}: value contains a quote, backslash, "
                               f"brace or control character; no Istio label value does")
    try:
        Selector(chosen)
    except ValueError as exc:
        raise RequestError(field, f"{field}: {exc}") from None
    return chosen


class Analyzer:
    """Runs analyses with a set of named configs on the data of one ``MetricSource``.

    Its ports: ``source`` (Prometheus, or a dataset in tests), ``store`` (sessions and
    history; the CLI has none), ``telemetry``, ``clock`` and ``rollout_facts`` (a Rollout's
    weight and canary revision, from Kubernetes). ``allow_inline_promql`` lets a request's
    inline config run its own PromQL (off: a caller could read any series).
    """

    def __init__(self, configs: Mapping[str, CanaryConfig], source: MetricSource, *,
                 store: Store | None = None, telemetry: Telemetry | None = None,
                 step_seconds: float = DEFAULT_STEP,
                 max_window: timedelta = DEFAULT_MAX_WINDOW,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rollout_facts: RolloutSource | None = None,
                 allow_inline_promql: bool = False,
                 final_after: timedelta = DEFAULT_FINAL_AFTER) -> None:
        self.configs = dict(configs)
        self.source = source
        self.store = store
        self.telemetry = telemetry
        self.step_seconds = step_seconds
        self.max_window = max_window
        self.clock = clock
        self.rollout_facts = rollout_facts
        self.allow_inline_promql = allow_inline_promql
        self.final_after = final_after
        self.kept = Continuations()

    def resolve(self, request: JudgeRequest) -> Resolved:
        """Every check that needs neither Prometheus nor the store; ``RequestError`` if bad."""
        if not _DNS_LABEL.fullmatch(request.namespace):
            raise RequestError("namespace", f"namespace {request.namespace[:80]!r} is not a "
                                            f"Kubernetes namespace name")
        canary = _labels(request.canary, request.canary_service, "canary")
        baseline = _labels(request.baseline, request.baseline_service, "baseline")
        try:
            sides = SideSelectors(request.namespace, canary, baseline, request.reporter)
        except SelectorError as exc:
            raise RequestError(exc.field or "canary", exc.message) from None
        if isinstance(request.config, str):
            config = self.configs.get(request.config)
            if config is None:
                raise RequestError("config", f"unknown config {request.config[:100]!r}; known: "
                                             f"{', '.join(sorted(self.configs))}")
            name = request.config
        else:
            try:
                config = parse_config(request.config, "config")
            except ConfigError as exc:
                raise RequestError("config", str(exc)) from None
            self._check_inline(config)
            name = f"inline:{config.name}"
        start = _time(request.start, "start")
        end = _time(request.end, "end") or self.clock()
        if start is not None and end < start:
            raise RequestError("end", f"end {rfc3339(end)} is before start {rfc3339(start)}")
        return Resolved(request.namespace, request.rollout, sides, config, name, start, end,
                        request.final, request.canary_weight, request.canary_revision)

    def _check_inline(self, config: CanaryConfig) -> None:
        """An inline config may read the built-in Istio metrics only, unless the server
        allows inline PromQL: a config in a request is written by whoever can call the API,
        and its PromQL could read any series in Prometheus."""
        if self.allow_inline_promql:
            return
        for index, metric in enumerate(config.metrics):
            if metric.kind == "promql":
                raise RequestError(f"config.metrics.{index}",
                                   f"config.metrics.{index} ({metric.name}): an inline config "
                                   f"may use the built-in Istio metrics only (kind "
                                   f"istio-error-rate or istio-latency); put PromQL metrics "
                                   f"in a server config, or start serve with "
                                   f"--allow-inline-promql")

    def _bounded(self, start: datetime, end: datetime) -> tuple[datetime, str | None]:
        """The window actually judged: all of it, or its most recent ``max_window`` (on the
        session's interval grid) with a note. Bounding the work keeps a long background
        analysis answered; refusing it would make Argo abort every later rollout."""
        if end - start <= self.max_window:
            return start, None
        skipped = (end - self.max_window - start).total_seconds()
        steps = math.ceil(skipped / self.step_seconds - 1e-9)
        bounded = start + timedelta(seconds=steps * self.step_seconds)
        hours = self.max_window.total_seconds() / 3600
        note = (f"judging the most recent {hours:g} h of this "
                f"{(end - start).total_seconds() / 3600:.1f} h analysis (from "
                f"{rfc3339(bounded)})")
        return bounded, note

    def run(self, request: JudgeRequest) -> dict[str, Any]:
        """The API's JSON answer (``analyzer.report.to_wire``) of ``analyse``."""
        return self._analyse(request)[1]

    def analyse(self, request: JudgeRequest) -> AnalysisReport:
        """Judges, records and reports one call. Raises ``RequestError`` (4xx), or an
        ``UnavailableError`` (Prometheus, the store: 503)."""
        return self._analyse(request)[0]

    def _analyse(self, request: JudgeRequest) -> tuple[AnalysisReport, dict[str, Any]]:
        """The report and its wire form, written once: the store, telemetry and the API
        answer all use the same dict."""
        began = time.monotonic()
        resolved = self.resolve(request)
        now = self.clock()
        facts = self._facts(resolved)
        revision, revision_source = _revision(resolved, facts)
        notes = [] if revision else [NO_REVISION_NOTE]
        key = SessionKey(resolved.namespace, resolved.rollout, resolved.selectors,
                         revision or "")
        start = resolved.start
        loaded = None if self.store is None else self.store.find_intervals(key)
        found, stored = loaded if loaded is not None else (None, None)
        kept = None if found is None else self.kept.take(found.id, resolved.config)
        if start is None:
            start = found.start if found is not None else min(now, resolved.end)
            if resolved.end < start:
                raise RequestError("end", f"end {rfc3339(resolved.end)} is before this "
                                          f"session's start {rfc3339(start)}; pass start too")
        window_start, bounded = self._bounded(start, resolved.end)
        if bounded is not None:
            notes.append(bounded)
        try:
            read = self._read(resolved, window_start, now, found, stored, kept, notes,
                              whole=bounded is not None)
        except ConfigError as exc:
            # A config whose queries cannot be run as written (e.g. an unaggregated gauge).
            raise RequestError("config", exc.message) from None
        window, diagnoses = read.window, read.diagnoses
        weight = resolved.canary_weight
        if weight is None and facts is not None:
            weight = facts.canary_weight
        weights = None if weight is None else np.full(len(window.timestamps), float(weight))
        try:
            judgement, state = judge_window(
                resolved.config, window, read.state, read.reused, read.final, weights,
                final=resolved.final, diagnoses=diagnoses,
                data_seconds=float(len(window.timestamps)) * self.step_seconds)
        except JudgeInputError as exc:
            raise RequestError("config", exc.message) from None
        row = self._row(read, stored, state)
        report = AnalysisReport(
            namespace=resolved.namespace, rollout=resolved.rollout,
            verdict=judgement.verdict, score=judgement.score,
            reason=judgement.reason if bounded is None else f"{judgement.reason} ({bounded})",
            window_start=window_start, window_end=resolved.end, session_start=start,
            revision=revision, revision_source=revision_source,
            traffic=_traffic(judgement.traffic, weight, resolved.config, window),
            metrics=tuple(MetricReport(r, tuple(window.metric_queries.get(r.name, [])),
                                       _text(diagnoses.get(r.name)))
                          for r in judgement.metrics),
            notes=tuple(notes), final=resolved.final)
        wire = to_wire(report)
        if self.store is not None:
            # One call: a new session, the closing of earlier revisions' sessions and the
            # first evaluation commit together (no session without its evaluation).
            recorded = self.store.record(
                key, resolved.config_name, start, at=now, window_end=resolved.end,
                verdict=wire["verdict"], score=wire["score"], final=resolved.final,
                response=wire, queries=list(window.queries), intervals=row,
                replaces=stored is not None, session=found)
            report = report.with_id(recorded.session.id)
            if read.final is not None and window.carry is not None:
                self.kept.put(recorded.session.id, Continued(
                    read.digest, read.final, head(window.series, read.final), window.carry,
                    state))
            wire = {**wire, "analysis_id": report.analysis_id}
            if recorded.created and self.telemetry is not None:
                self.telemetry.session_created()
        if self.telemetry is not None:
            self.telemetry.record(resolved.namespace, resolved.rollout, wire,
                                  canary=resolved.sides.canary, stable=resolved.sides.baseline)
            self.telemetry.analysis_duration.observe(time.monotonic() - began)
        return report, wire

    def _read(self, resolved: Resolved, window_start: datetime, now: datetime,
              found: AnalysisSession | None, stored: StoredHeader | None,
              kept: Continued | None, notes: list[str], *, whole: bool) -> _Read:
        """The window's data, and how much of it a stored row or this process' kept entry
        continues.

        The seam between stored and new data, in one place: take the session's final
        intervals (kept in memory from the last call, else the stored row) → read only the
        intervals after them from Prometheus (plus the ``SEAM_OVERLAP`` re-read) → join →
        the judge continues the running state that covers them. Stored intervals that do not
        fit (another config or grid, an unreadable blob, late samples at the seam) are never
        used: the window is read whole, and ``notes`` says so. A bounded window (``whole``)
        moves its start with every call and is always read whole.
        """
        metrics, step = resolved.config.metrics, self.step_seconds
        n = window_intervals(window_start, resolved.end, step)
        settled = (now - self.final_after - window_start).total_seconds() / step
        final = max(0, min(n, math.floor(settled + 1e-9)))
        digest = fingerprint(metrics, resolved.selectors, window_start.timestamp(), step)
        source = self.source
        if not isinstance(source, IncrementalSource) or whole:
            window, diagnoses = source.read(metrics, resolved.sides, window_start,
                                            resolved.end, step)
            return _Read(window, diagnoses, digest)
        resume, state = None, None
        # The process' entry, unless the stored row got further (another replica or worker).
        if (kept is not None and kept.fingerprint == digest and kept.intervals <= n
                and not (stored is not None and stored.fingerprint == digest
                         and stored.intervals > kept.intervals)):
            resume = Resume(kept.series, Seam(kept.intervals, kept.carry, SEAM_OVERLAP))
            state = kept.state
        elif found is not None and stored is not None and stored.intervals >= 1:
            if stored.fingerprint != digest:
                notes.append("this session's stored intervals were read with another config "
                             "or grid; read the whole window")
            elif stored.intervals <= n and self.store is not None:
                resume, state = self._resume(found, digest, n, resolved.config, notes)
        after = 0 if resume is None else resume.seam.stored
        keeps = self.store is not None and final >= after  # else no carry to compute
        try:
            window, diagnoses = source.read(metrics, resolved.sides, window_start, resolved.end,
                                            step, resume=resume, final=final if keeps else None)
        except (SeamMismatch, StoredMismatch) as exc:
            notes.append(f"stored intervals could not be continued ({exc}); read the whole "
                         f"window")
            after, state = 0, None
            window, diagnoses = source.read(metrics, resolved.sides, window_start, resolved.end,
                                            step, final=final if self.store is not None else None)
        if window.carry is None or final < 1:
            return _Read(window, diagnoses, digest, after, state)
        return _Read(window, diagnoses, digest, after, state, final)

    def _resume(self, found: AnalysisSession, digest: str, n: int, config: CanaryConfig,
                notes: list[str]) -> tuple[Resume | None, JudgeState | None]:
        """The session's stored row to continue, and its judge state, if it fits."""
        assert self.store is not None
        row = self.store.intervals_of(found.id)  # may have moved on since its header was read
        if row is None or row.fingerprint != digest or not 1 <= row.intervals <= n:
            return None, None
        try:
            series, carry = unpack(row.data)
        except StoredMismatch as exc:
            notes.append(f"{exc}; read the whole window")
            return None, None
        return (Resume(series, Seam(row.intervals, carry, SEAM_OVERLAP)),
                _stored_state(row, config))

    def _row(self, read: _Read, stored: StoredHeader | None, state: JudgeState
             ) -> StoredIntervals | None:
        """The session's row to store with this call, if it is due: when there is none or it
        could not be continued, and then every ``PERSIST_EVERY`` final intervals (between
        writes, this process continues its kept entry; see ``analyzer.continuation``)."""
        if read.final is None or read.window.carry is None:
            return None
        if stored is not None and stored.fingerprint == read.digest:
            if read.final <= stored.intervals:
                return None  # the store keeps the row with more intervals
            if read.reused and read.final < stored.intervals + PERSIST_EVERY:
                return None
        data = pack(head(read.window.series, read.final), read.window.carry)
        blob = zlib.compress(json.dumps(state.to_dict(), allow_nan=False).encode(), 1)
        return StoredIntervals(read.digest, read.final, data, blob)

    def _facts(self, resolved: Resolved) -> RolloutFacts | None:
        """Kubernetes is asked only for what the request did not say."""
        if self.rollout_facts is None or (resolved.canary_weight is not None
                                          and resolved.canary_revision is not None):
            return None
        return self.rollout_facts(resolved.namespace, resolved.rollout)


def judge_window(config: CanaryConfig, window: WindowData, state: JudgeState | None,
                 covered: int, keep: int | None, weights: np.ndarray | None, *,
                 final: bool, diagnoses: Mapping[str, Missing], data_seconds: float
                 ) -> tuple[Judgement, JudgeState]:
    """The judgement on the whole window, and the judge's running state over its first
    ``keep`` (final) intervals, to continue at the next call.

    ``state`` covers the window's first ``covered`` intervals (kept from the last call, or
    the session's stored row); it is extended by the intervals that became final since, and
    a copy by the provisional tail is judged: a call costs O(new intervals), as judging a
    24-hour analysis every 30 s demands. Without a state (a new session, a whole-window
    read, another judge version or config) the window is folded afresh, which is the same
    computation in one chunk. ``state`` is extended in place.
    """
    n = len(window.timestamps)
    if state is None:
        state, covered = JudgeState(config), 0
    saved = covered if keep is None else max(keep, covered)
    if n == 0:  # no complete interval yet: the empty series still say which metrics exist
        state.extend(window.series, weights=weights)
    _extend(state, window, weights, covered, saved)
    look = state
    if saved < n:
        look = state.copy()
        _extend(look, window, weights, saved, n)
    judgement = look.judgement(final=final, recent_weights_only=True, diagnoses=diagnoses,
                               data_seconds=data_seconds)
    return judgement, state


def _stored_state(stored: StoredIntervals, config: CanaryConfig) -> JudgeState | None:
    """The row's judge state (it covers exactly the row's intervals), if it can be continued
    under ``config``."""
    if stored.judge_state is None:
        return None
    try:
        return JudgeState.from_dict(json.loads(zlib.decompress(stored.judge_state)), config)
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        log.info("stored judge state not continued (%s); judging the window afresh", exc)
        return None


def _extend(state: JudgeState, window: WindowData, weights: np.ndarray | None, start: int,
            stop: int) -> None:
    if stop > start:
        state.extend({name: series.window(start, stop) for name, series in window.series.items()},
                     weights=None if weights is None else weights[start:stop])


def _revision(resolved: Resolved, facts: RolloutFacts | None) -> tuple[str | None, str | None]:
    """The canary revision that keys the session, and where it came from."""
    if resolved.canary_revision is not None:
        return resolved.canary_revision, "request"
    if facts is not None and facts.canary_revision:
        return facts.canary_revision, "rollout"
    return None, None


def _text(missing: Missing | None) -> str | None:
    return None if missing is None else missing.text


def _traffic(check: TrafficCheck | None, weight: float | None, config: CanaryConfig,
             window: WindowData) -> TrafficReport:
    """The split check's result; without one, the observed share alone."""
    if check is None:
        return TrafficReport(weight, _observed_share(config, window), True)
    return TrafficReport(weight, check.observed_canary_share, check.split_ok, check.reason)


def _observed_share(config: CanaryConfig, window: WindowData) -> float | None:
    """Canary requests / all requests, from the first Istio error-rate metric."""
    for metric in config.metrics:
        series = window.series.get(metric.name)
        if metric.kind == "istio-error-rate" and isinstance(series, RatioSeries):
            canary = float(np.sum(series.canary_den))
            total = canary + float(np.sum(series.baseline_den))
            return canary / total if total > 0 else None
    return None
