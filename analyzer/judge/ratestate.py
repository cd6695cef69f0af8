"""The rate test of ``analyzer.judge.rate`` as a running state: O(new intervals) per update.

Everything the test decides for an interval (its unit of evidence, its tempering, its
absolute-margin ratio) is fixed from the intervals before it, so each interval's contribution
to the log-likelihoods is fixed once the interval is seen. The state therefore holds running
sums only:

* the sums behind the predictable plan and margins (exclusive cumulative sums, carried on);
* per test (fail up/down, gate up/down) the tempered log-likelihood of every mixture component
  over the event-level intervals, and the t-test's sums Σx and Σx² over the others;
* for the estimate and the confidence sequence, the tempered log-likelihood on a fixed grid of
  log ratios (step ``GRID_STEP``), over the event-level intervals and over all intervals, and
  the t-test's unshifted Σy, Σy².

The confidence sequence is the mixture test inverted over the grid's nulls, with the mixture's
alternatives rounded to grid points (still a uniform mixture of fixed alternatives, so still an
e-process per null); its edges are interpolated between grid points. The estimate maximises
the grid log-likelihood with a parabola through the best point and its neighbours. A report
therefore costs O(grid), whatever the number of intervals.

A state is a batch of tests that share their intervals and settings: every array has a
leading member axis. A ratio metric and the split check are batches of one; a latency metric's
thresholds are one batch, so a live call folds and reports all of them in one pass of array
operations (one t-test call for all their e-values) instead of dozens of small ones per
threshold. A member's numbers do not depend on its batch: intervals a member does not use in
a test weigh 0 there.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.special import expit, gammaincinv

from analyzer.judge import ttest
from analyzer.judge.rate import (
    _DELTA_BOUND,
    BASELINE_BOUND_LEVEL,
    FIRST_TAU2,
    INTERVAL_KAPPA,
    MAX_ABSOLUTE_RATIO,
    MIN_INTERVAL_EVENTS,
    OFFSETS,
    PRIOR_INTERVALS,
    PRIOR_TAU2,
    RECENT,
    TEMPER_SAFETY,
    RateTest,
    SplitData,
)

# Grid of log ratios for the estimate and the confidence sequence: nulls within ±GRID_REACH
# (ratios 1/3000 to 3000), padded by the largest alternative offset.
GRID_STEP = 0.02
GRID_REACH = 8.0
_REACH = round(GRID_REACH / GRID_STEP)
_PAD = math.ceil(float(OFFSETS.max()) / GRID_STEP)
GRID = GRID_STEP * np.arange(-(_REACH + _PAD), _REACH + _PAD + 1)
_CENTRAL = np.arange(_PAD, _PAD + 2 * _REACH + 1)  # indices of the nulls
_STEPS = np.maximum(np.round(OFFSETS / GRID_STEP).astype(int), 1)  # alternatives, in steps
_COMPONENTS = np.concatenate(([0.0], OFFSETS))
# The confidence sequence's coarse search: grid steps outward from the estimate, the first
# _FIRST_COARSE of them tried first (about two edges in three lie among them).
_COARSE = np.concatenate(([0], np.unique(np.round(np.geomspace(0.03, 2 * GRID_REACH, 15)
                                                  / GRID_STEP)))).astype(int)
_FIRST_COARSE = 8
# The four tests: (margin, direction). up_fail: harm up; down: harm down; up_gate: inside up;
# down_gate: inside down.
_TESTS = (("up_fail", True), ("down", False), ("up_gate", False), ("down_gate", True))
_SIGNS = np.array([1.0 if upward else -1.0 for _, upward in _TESTS])
# Running sums per member of a batch; "n" (intervals) and "share" (Σ canary request share)
# are the same for every member and are kept once.
_SUMS = ("n_t", "up", "down", "excess", "scale", "events", "requests", "c", "nc",
         "b", "nb", "b2", "bnb", "nb2")
VERSION = 2


def _excl(total: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per member, exclusive running sums over a chunk (last axis), carried on from
    ``total``; and the new totals. ``x`` common to all members may be one row."""
    running = np.cumsum(x, axis=-1)
    before = np.zeros(running.shape)
    before[..., 1:] = running[..., :-1]
    return total[:, None] + before, total + running[..., -1]


def _interpolate(nulls: np.ndarray, v: np.ndarray) -> float:
    """The log ratio where ``v`` (below 0 at the first of ``nulls``) first reaches 0,
    linearly between grid nulls."""
    j = int(np.nonzero(v >= 0)[0][0])
    a, b = float(GRID[nulls[j - 1]]), float(GRID[nulls[j]])
    return a + (b - a) * (-v[j - 1]) / (v[j] - v[j - 1])


def _pack(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, dtype="<f8").tobytes()).decode("ascii")


def _unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").copy()


def _log_mean_exp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.exp(x - top).mean(axis=axis))


class RateState:
    """Running state of a batch of ``size`` rate tests that share their intervals and
    settings: one ratio metric or the split check (a batch of one), or all thresholds of a
    latency metric (one member per threshold), folded in one pass of array operations.

    A batch's data (``SplitData``) has canary and event counts of shape (size, intervals)
    (or just (intervals,) for a batch of one) and one canary share and request count per
    interval, common to all members. ``tau2`` fixes the jitter (0: the textbook binomial
    test) and keeps every interval in the event-level test; ``requests=False`` for data
    without per-side request counts (the traffic check), ``grid=False`` when no estimate or
    interval will ever be asked for.
    """

    def __init__(self, *, allowed_increase: float = 1.0, allowed_decrease: float = 1.0,
                 absolute_increase: float = 0.0, gate_increase: float | None = None,
                 gate_decrease: float | None = None, tau2: float | None = None,
                 requests: bool = True, grid: bool = True, size: int = 1) -> None:
        self.settings: dict[str, Any] = {
            "allowed_increase": allowed_increase, "allowed_decrease": allowed_decrease,
            "absolute_increase": absolute_increase, "gate_increase": gate_increase,
            "gate_decrease": gate_decrease, "tau2": tau2, "requests": requests, "grid": grid,
            "size": size}
        self.size = size
        self.n = 0.0  # intervals folded in
        self.share = 0.0  # Σ canary request share over them
        self.sums = {name: np.zeros(size) for name in _SUMS}
        self.components = np.zeros((size, len(_TESTS), len(_COMPONENTS)))
        self.t_sums = np.zeros((size, len(_TESTS) + 1, 2))  # per test Σx, Σx²; last unshifted
        self.grid_events = np.zeros((size, len(GRID))) if grid else None
        self.grid_all = np.zeros((size, len(GRID))) if grid else None
        self.tail = {"canary": np.zeros((size, 0)), "temper": np.zeros((size, 0))}
        self.tail_logit: list[float] = []
        self.last = {"tau2": np.full(size, PRIOR_TAU2 if tau2 is None else tau2),
                     "up_fail": np.full(size, allowed_increase),
                     "up_gate": np.full(size, allowed_increase)}

    # ----------------------------------------------------------------- updating
    def extend(self, data: SplitData, ratios: dict[str, np.ndarray] | None = None) -> None:
        """Fold in the next intervals (already restricted to traffic on both sides).

        ``ratios`` may give per member and interval ratio margins ``up``, ``gate_up``,
        ``down``, ``gate_down`` in place of the fixed ones (latency thresholds, whose
        exceedance margins are bounded from the baseline's earlier intervals).
        """
        k = len(data)
        if k == 0:
            return
        shape = (self.size, k)
        data = SplitData(np.reshape(data.canary, shape), np.reshape(data.events, shape),
                         data.logit_share, data.canary_requests, data.baseline_requests)
        share = expit(data.logit_share)
        temper, by_interval, tau_last = self._plan(data, share)
        shifts = self._shifts(data, ratios or {})  # (size, test, interval)
        events = ~by_interval
        if events.any():
            self._fold_events(data, shifts, temper, events)
        if by_interval.any():
            nc, nb = data.requests
            y = ttest.log_ratios(data.canary, nc, data.baseline, nb)
            x = np.where(by_interval[:, None, :], y[:, None, :] - shifts, 0.0)
            y = np.where(by_interval, y, 0.0)
            self.t_sums[:, :-1] += np.stack((x.sum(axis=-1), (x * x).sum(axis=-1)), axis=-1)
            self.t_sums[:, -1] += np.stack((y.sum(axis=-1), (y * y).sum(axis=-1)), axis=-1)
        if self.grid_all is not None and self.grid_events is not None:
            self._fold_grid(data, temper, events)
        self.n += k
        self.sums["n_t"] = self.sums["n_t"] + by_interval.sum(axis=-1)
        self.share += float(share.sum())
        for name, values in (("canary", data.canary), ("temper", temper)):
            self.tail[name] = np.concatenate((self.tail[name], values[:, -RECENT:]),
                                             axis=1)[:, -RECENT:]
        self.tail_logit = (self.tail_logit + data.logit_share[-RECENT:].tolist())[-RECENT:]
        last = shifts[:, :, -1].tolist()
        self.last = {"tau2": tau_last,
                     "up_fail": np.array([math.exp(row[0]) for row in last]),
                     "up_gate": np.array([math.exp(row[2]) for row in last])}

    def _plan(self, data: SplitData, share: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per member and interval, from the intervals before it: tempering and unit of
        evidence (True: the interval-level t-test); and the latest interval's τ²."""
        s, cfg = self.sums, self.settings
        if cfg["tau2"] is not None or not cfg["requests"]:
            fixed = PRIOR_TAU2 if cfg["tau2"] is None else cfg["tau2"]
            kappa = np.maximum(data.events - 1.0, 0.0) * share * (1 - share) * fixed
            self._carry_counts(data)
            return 1.0 + kappa, np.zeros(kappa.shape, dtype=bool), np.full(self.size, fixed)
        tau = self._split_jitter(data)
        nc, nb = data.requests
        seen_events, s["events"] = _excl(s["events"], data.events)
        seen_requests, s["requests"] = _excl(s["requests"], nc + nb)
        seen_c, s["c"] = _excl(s["c"], data.canary)
        seen_nc, s["nc"] = _excl(s["nc"], nc)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(seen_requests > 0, seen_events / seen_requests, 0.0)
        seen = seen_events > 0
        info = np.where(seen, rate * nc * nb / (nc + nb),
                        np.maximum(data.events - 1.0, 0.0) * share * (1 - share))
        kappa = info * np.where(seen, tau, FIRST_TAU2)
        with np.errstate(divide="ignore", invalid="ignore"):
            expected_c = np.where(seen_nc > 0, np.maximum(seen_c, 1.0) / seen_nc * nc, 0.0)
            expected_b = np.where(seen_requests > seen_nc,
                                  np.maximum(seen_events - seen_c, 1.0)
                                  / (seen_requests - seen_nc) * nb, 0.0)
        normal = np.minimum(expected_c, expected_b) >= MIN_INTERVAL_EVENTS
        by_interval = seen & normal & (kappa >= INTERVAL_KAPPA)
        return 1.0 + TEMPER_SAFETY * kappa, by_interval, tau[:, -1].copy()

    def _carry_counts(self, data: SplitData) -> None:
        s = self.sums
        s["events"] = s["events"] + data.events.sum(axis=-1)
        s["c"] = s["c"] + data.canary.sum(axis=-1)
        if data.has_requests:
            nc, nb = data.requests
            s["requests"] = s["requests"] + float((nc + nb).sum())
            s["nc"] = s["nc"] + float(nc.sum())

    def _split_jitter(self, data: SplitData) -> np.ndarray:
        """``rate.split_jitter``'s predictable τ², from the running Mantel-Haenszel sums."""
        s = self.sums
        nc, nb = data.requests
        c, b = data.canary, data.baseline
        total = nc + nb
        up, s["up"] = _excl(s["up"], c * nb / total)
        down, s["down"] = _excl(s["down"], b * nc / total)
        fitted = (up > 0) & (down > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            delta = np.where(fitted, np.log(up) - np.log(down), 0.0)
        theta = expit(data.logit_share + np.clip(delta, -_DELTA_BOUND, _DELTA_BOUND))
        v = data.events * theta * (1 - theta)
        excess = np.where(fitted, (c - data.events * theta) ** 2 - v, 0.0)
        scale = np.where(fitted, np.maximum(data.events - 1.0, 0.0) * data.events
                         * (theta * (1 - theta)) ** 2, 0.0)
        seen_excess, s["excess"] = _excl(s["excess"], excess)
        seen_scale, s["scale"] = _excl(s["scale"], scale)
        count = self.n + np.arange(len(data), dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            typical = np.where(seen_scale > 0, seen_scale / np.maximum(count, 1.0), 1.0)
        prior = PRIOR_INTERVALS * typical
        return np.maximum((seen_excess + prior * PRIOR_TAU2) / (seen_scale + prior), 0.0)

    def _shifts(self, data: SplitData, ratios: dict[str, np.ndarray]) -> np.ndarray:
        """Per member, test (``_TESTS``' order) and interval, the log ratio its null sits at
        (``rate.py``: margins)."""
        cfg = self.settings
        shape = data.events.shape

        def given(name: str, default: float) -> np.ndarray:
            return np.log(ratios[name]) if name in ratios else np.full(shape, math.log(default))

        up = given("up", cfg["allowed_increase"])
        gate_up = given("gate_up", cfg["gate_increase"] or cfg["allowed_increase"])
        if cfg["absolute_increase"] > 0 and cfg["requests"]:
            up, gate_up = self._absolute(data, np.exp(up), np.exp(gate_up))
        down = given("down", cfg["allowed_decrease"])
        gate_down = given("gate_down", cfg["gate_decrease"] or cfg["allowed_decrease"])
        return np.stack((up, down, gate_up, gate_down), axis=1)

    def _absolute(self, data: SplitData, ratio: np.ndarray, gate_ratio: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Log ratios of ``max(ratio × p_b, p_b + absolute)``, ``p_b`` bounded from the
        baseline's earlier intervals (the first interval uses its own baseline): from below
        for the fail test, from above for the gate."""
        s = self.sums
        absolute = self.settings["absolute_increase"]
        b, nb = data.baseline, data.requests[1]
        seen_b, s["b"] = _excl(s["b"], b)
        seen_n, s["nb"] = _excl(s["nb"], nb)
        x2, s["b2"] = _excl(s["b2"], b * b)
        xn, s["bnb"] = _excl(s["bnb"], b * nb)
        n2, s["nb2"] = _excl(s["nb2"], nb * nb)
        count = self.n + np.arange(len(data), dtype=float)
        # The baseline's jitter (squared CV beyond binomial noise), shrunk towards the prior.
        dof = np.maximum(count - 1.0, 0.0)
        fit = np.where(dof > 0, count / np.maximum(dof, 1.0), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(seen_n > 0, seen_b / seen_n, 0.0)
            excess = x2 - 2 * p * xn + p * p * n2 - p * (1 - p) * seen_n
            tau = np.maximum(np.where(p > 0, excess / (p * p * n2), np.nan), 0.0)
        half = PRIOR_TAU2 / 2
        tau = np.where(np.isnan(tau), half, tau * fit)
        tau_b = (dof * tau + PRIOR_INTERVALS * half) / (dof + PRIOR_INTERVALS)
        first = seen_n <= 0
        events = np.where(first, b, seen_b)
        requests = np.where(first, nb, seen_n)
        per = np.maximum(count, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            effective = np.where(events > 0, 1.0 / (1.0 / events + tau_b / per), 0.0)
            # Gamma quantiles (scipy.stats.gamma.ppf without its per-call overhead).
            lower = np.where(events > 0, events / requests
                             * gammaincinv(effective, BASELINE_BOUND_LEVEL) / effective, 0.0)
            upper = np.where(events > 0, events / requests
                             * gammaincinv(effective + 1, 1 - BASELINE_BOUND_LEVEL) / effective,
                             -math.log(BASELINE_BOUND_LEVEL) / requests)
            allowed_fail = np.where(lower > 0, 1.0 + absolute / lower, math.inf)
            allowed_gate = np.where(upper > 0, 1.0 + absolute / upper, math.inf)
        fail = np.log(np.clip(allowed_fail, ratio, np.maximum(ratio, MAX_ABSOLUTE_RATIO)))
        gate = np.log(np.clip(allowed_gate, gate_ratio,
                              np.maximum(gate_ratio, MAX_ABSOLUTE_RATIO)))
        return fail, gate

    def _fold_events(self, data: SplitData, shifts: np.ndarray, temper: np.ndarray,
                     rows: np.ndarray) -> None:
        """Add the event-level intervals' (``rows``) tempered log-likelihoods, per member,
        test and component; the other intervals weigh 0."""
        c, e = data.canary[:, None, :, None], data.events[:, None, :, None]
        weight = np.where(rows, 1.0 / temper, 0.0)
        centre = data.logit_share + shifts
        x = centre[..., None] + _SIGNS[:, None, None] * _COMPONENTS
        ll = -(c * np.logaddexp(0.0, -x) + (e - c) * np.logaddexp(0.0, x))
        self.components += (ll * weight[:, None, :, None]).sum(axis=2)

    def _fold_grid(self, data: SplitData, temper: np.ndarray, events: np.ndarray) -> None:
        """Σ over intervals of (c·x − e·softplus(x)) / temper at x = logit share + grid, over
        all intervals and over the event-level ones (``events``)."""
        c, e, base = data.canary, data.events, data.logit_share
        rows = e > 0
        if not rows.any():
            return
        weight = np.where(rows, 1.0 / temper, 0.0)
        weight = np.stack((weight, np.where(events, weight, 0.0)))  # all; event-level
        softplus = np.logaddexp(0.0, base[:, None] + GRID)
        wc = weight * c
        ll = ((wc * base).sum(axis=-1)[..., None] + wc.sum(axis=-1)[..., None] * GRID
              - (weight * e) @ softplus)
        assert self.grid_all is not None and self.grid_events is not None
        self.grid_all += ll[0]
        self.grid_events += ll[1]

    # ----------------------------------------------------------------- reading
    def _log_e(self) -> np.ndarray:
        """Per member, the four tests' log e-values (event mixture plus t-test; one t-test
        call for the whole batch)."""
        ratios = self.components[..., 1:] - self.components[..., :1]
        out = _log_mean_exp(ratios)
        n_t = self.sums["n_t"]
        rows = n_t >= 2
        if rows.any():
            sums = self.t_sums[rows, :-1]
            t_part = ttest.log_e_from_sums(np.repeat(n_t[rows], len(_TESTS)),
                                           (_SIGNS * sums[..., 0]).ravel(),
                                           sums[..., 1].ravel(), True)
            out[rows] = out[rows] + t_part.reshape(-1, len(_TESTS))
        return out

    def _delta_hat(self, i: int) -> float:
        """Member ``i``'s maximum-likelihood log ratio (±inf when one side has no events, NaN
        without any)."""
        total_events, canary = float(self.sums["events"][i]), float(self.sums["c"][i])
        if self.n == 0 or total_events == 0:
            return math.nan
        if canary == 0:
            return -math.inf
        if canary == total_events:
            return math.inf
        assert self.grid_all is not None
        ll = self.grid_all[i, _CENTRAL]
        j = int(np.argmax(ll))
        if j == 0 or j == len(ll) - 1:
            return math.copysign(math.inf, j - 0.5)  # beyond the grid's reach
        left, mid, right = ll[j - 1], ll[j], ll[j + 1]
        curve = left - 2 * mid + right
        step = 0.0 if curve >= 0 else 0.5 * (left - right) / curve
        return float(GRID[_CENTRAL[j]] + step * GRID_STEP)

    def _cs_values(self, i: int, groups: list[tuple[np.ndarray, bool]], log_k: float
                   ) -> list[np.ndarray]:
        """Member ``i``'s log e-value minus log_k at grid nulls (indices into GRID), for
        groups of nulls each tested upward or downward; one t-test call for all of them."""
        assert self.grid_events is not None
        ll = self.grid_events[i]
        values = []
        for nulls, upward in groups:
            sign = 1 if upward else -1
            alternatives = ll[nulls[:, None] + sign * _STEPS[None, :]] - ll[nulls][:, None]
            values.append(_log_mean_exp(alternatives) - log_k)
        n_t = int(self.sums["n_t"][i])
        if n_t < 2:
            return values
        total, squares = self.t_sums[i, -1].tolist()
        nu = np.concatenate([GRID[nulls] for nulls, _ in groups])
        signs = np.concatenate([np.full(len(nulls), 1.0 if upward else -1.0)
                                for nulls, upward in groups])
        t_part = ttest.log_e_from_sums(n_t, signs * (total - n_t * nu),
                                       squares - 2 * nu * total + n_t * nu * nu, True)
        cuts = np.cumsum([len(nulls) for nulls, _ in groups])[:-1]
        return [v + t for v, t in zip(values, np.split(t_part, cuts), strict=True)]

    def _edges(self, i: int, log_k: float, start: float) -> tuple[float, float]:
        """Edges (log ratios) of member ``i``'s confidence sequence on the grid: a coarse
        search outward from the estimate on each side, then up to 9 grid nulls inside each
        bracket, interpolated linearly; ±inf where the grid's reach excludes nothing.

        The e-values are computed in rounds, both sides in one call per round: the first
        ``_FIRST_COARSE`` coarse nulls (most edges lie among them), the rest of them where
        no edge was found yet, and the nulls inside a bracket (its ends are known). Each
        null's value does not depend on which others share its call, so the edges are those
        of the full search; only the nulls past an edge are skipped."""
        lo, hi = int(_CENTRAL[0]), int(_CENTRAL[-1])
        centre = int(np.clip(round(start / GRID_STEP) + _PAD + _REACH, lo, hi))
        sides = {True: -1, False: 1}  # the upward test gives the lower edge
        coarse = {up: np.unique(np.clip(centre + sign * _COARSE, lo, hi))[::sign]
                  for up, sign in sides.items()}  # outward from the centre
        values = {up: np.zeros(0) for up in sides}  # at coarse[up][:len(values[up])]
        brackets: dict[bool, tuple[np.ndarray, float, float]] = {}  # nulls, end values
        edges: dict[bool, float] = {}
        asked = {up: coarse[up][:_FIRST_COARSE] for up in sides}
        while asked:
            answers = self._cs_values(i, [(nulls, up) for up, nulls in asked.items()], log_k)
            following = {}
            for up, v in zip(asked, answers, strict=True):
                if up in brackets:
                    nulls, first, last = brackets[up]
                    edges[up] = _interpolate(nulls, np.concatenate(([first], v, [last])))
                    continue
                values[up] = np.concatenate((values[up], v))
                hits = np.nonzero(values[up] >= 0)[0]
                if len(hits) == 0 and len(values[up]) < len(coarse[up]):
                    following[up] = coarse[up][len(values[up]):]
                elif len(hits) == 0:
                    edges[up] = sides[up] * math.inf
                elif hits[0] == 0:
                    edges[up] = float(GRID[coarse[up][0]])
                else:
                    j = int(hits[0])
                    inside = np.linspace(coarse[up][j - 1], coarse[up][j], 9)
                    nulls = np.unique(np.round(inside).astype(int))[::sides[up]]
                    brackets[up] = (nulls, float(values[up][j - 1]), float(values[up][j]))
                    if len(nulls) > 2:
                        following[up] = nulls[1:-1]
                    else:
                        edges[up] = _interpolate(nulls, values[up][j - 1:j + 1])
            asked = following
        return edges[True], edges[False]

    def results(self) -> list[RateTest]:
        """Each member's test on every interval so far, without confidence sequences
        (``interval`` gives one member's)."""
        s, cfg = self.sums, self.settings
        n = int(self.n)
        log_e = self._log_e().tolist()
        canary, events = s["c"].tolist(), s["events"].tolist()
        n_t, tau2 = s["n_t"].tolist(), self.last["tau2"].tolist()
        up_fail, up_gate = self.last["up_fail"].tolist(), self.last["up_gate"].tolist()
        temper = self.tail["temper"].mean(axis=1).tolist() if n else None
        recent = self.tail["canary"].mean(axis=1).tolist() if n else None
        out = []
        for i in range(self.size):
            c_events = round(canary[i])
            b_events = round(events[i] - canary[i])
            estimate = None
            if self.grid_all is not None:
                delta_hat = self._delta_hat(i)
                if math.isinf(delta_hat):
                    share = self.share / n
                    estimate = ((c_events + 0.5) / share) / ((b_events + 0.5) / (1.0 - share))
                elif not math.isnan(delta_hat):
                    estimate = math.exp(delta_hat)
            out.append(RateTest(
                log_e_increase=log_e[i][0], log_e_decrease=log_e[i][1],
                log_e_inside_up=log_e[i][2], log_e_inside_down=log_e[i][3],
                estimate=estimate, interval=None, tau2=tau2[i],
                canary_events=c_events, baseline_events=b_events,
                margin_up=up_fail[i] if n else cfg["allowed_increase"],
                gate_up=up_gate[i] if n else cfg["allowed_increase"],
                interval_share=n_t[i] / n if n else 0.0,
                recent_temper=temper[i] if temper is not None else 1.0,
                recent_canary=recent[i] if recent is not None else 0.0,
                last_logit_share=self.tail_logit[-1] if n else None))
        return out

    def interval(self, i: int, log_k: float) -> tuple[float, float] | None:
        """Member ``i``'s confidence sequence (ratios; one-sided errors each at most
        ``exp(-log_k)``), around its estimate; None before any interval or without a grid."""
        if not self.n or self.grid_events is None:
            return None
        delta_hat = self._delta_hat(i)
        centre = 0.0 if math.isnan(delta_hat) else float(
            np.clip(delta_hat, -GRID_REACH, GRID_REACH))
        lo, hi = self._edges(i, log_k, centre)
        return (0.0 if math.isinf(lo) else math.exp(lo),
                math.inf if math.isinf(hi) else math.exp(hi))

    def result(self, interval_log_k: float | None = None) -> RateTest:
        """The test of a batch of one on every interval so far; ``interval_log_k`` asks for
        the confidence sequence (one-sided errors each at most ``exp(-interval_log_k)``)."""
        if self.size != 1:
            raise ValueError(f"result() of a batch of {self.size}: use results()")
        rate = self.results()[0]
        if interval_log_k is None:
            return rate
        return replace(rate, interval=self.interval(0, interval_log_k))

    # ----------------------------------------------------------------- storing
    def copy(self) -> RateState:
        other = RateState.__new__(RateState)
        other.settings = dict(self.settings)
        other.size, other.n, other.share = self.size, self.n, self.share
        other.sums = dict(self.sums)  # arrays are replaced, never changed in place
        other.components = self.components.copy()
        other.t_sums = self.t_sums.copy()
        other.grid_events = None if self.grid_events is None else self.grid_events.copy()
        other.grid_all = None if self.grid_all is None else self.grid_all.copy()
        other.tail = dict(self.tail)
        other.tail_logit = list(self.tail_logit)
        other.last = dict(self.last)
        return other

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "settings": self.settings, "n": self.n, "share": self.share,
                "sums": {k: v.tolist() for k, v in self.sums.items()},
                "last": {k: v.tolist() for k, v in self.last.items()},
                "tail": {k: v.tolist() for k, v in self.tail.items()},
                "tail_logit": self.tail_logit,
                "components": _pack(self.components), "t_sums": _pack(self.t_sums),
                "grid_events": None if self.grid_events is None else _pack(self.grid_events),
                "grid_all": None if self.grid_all is None else _pack(self.grid_all)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateState:
        if data.get("v") != VERSION:
            raise ValueError(f"rate state version {data.get('v')!r}, expected {VERSION}")
        state = cls(**data["settings"])
        size = state.size

        def rows(value: list) -> np.ndarray:
            return np.asarray(value, dtype=float).reshape(size, -1)

        state.n, state.share = float(data["n"]), float(data["share"])
        state.sums = {k: rows(data["sums"][k])[:, 0] for k in _SUMS}
        state.last = {k: rows(data["last"][k])[:, 0] for k in state.last}
        state.tail = {k: rows(data["tail"][k]) for k in state.tail}
        state.tail_logit = [float(x) for x in data["tail_logit"]]
        state.components = _unpack(data["components"]).reshape(state.components.shape)
        state.t_sums = _unpack(data["t_sums"]).reshape(state.t_sums.shape)
        if state.grid_events is not None and state.grid_all is not None:
            state.grid_events = _unpack(data["grid_events"]).reshape(state.grid_events.shape)
            state.grid_all = _unpack(data["grid_all"]).reshape(state.grid_all.shape)
        return state


def fold(data: SplitData, chunks: Sequence[int] | None = None, **settings: Any) -> RateState:
    """A state with ``data`` folded in (in ``chunks`` of the given sizes, or at once)."""
    state = RateState(requests=data.has_requests, **settings)
    if chunks is None:
        state.extend(data)
        return state
    start = 0
    for size in chunks:
        part = np.arange(start, min(start + size, len(data)))
        state.extend(_take(data, part))
        start += size
    return state


def _take(data: SplitData, index: np.ndarray) -> SplitData:
    return SplitData(data.canary[index], data.events[index], data.logit_share[index],
                     None if data.canary_requests is None else data.canary_requests[index],
                     None if data.baseline_requests is None else data.baseline_requests[index])
