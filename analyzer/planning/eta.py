"""How much longer the gate needs, during a rollout: the plan's forecast, continued from now.

The live answer's first estimate (``analyzer.judge.rate.needed_events``) divides the missing
evidence by the evidence an event brings *now*; early in a canary that rate is at its worst (the
jitter prior tempers hardest, the baseline-rate bounds are widest), so the estimate runs long. This
one runs the plan's forecast (``forecast.crossing_seconds``) over the canary's real shares so
far, the latest share held from now on, and reads the median remaining time of the paths that
have not passed by now. It does not see the evidence gathered so far, only how much a canary
like this one has usually gathered by now.
"""

from __future__ import annotations

import math

import numpy as np

from analyzer.planning.forecast import Margin, Ramp, Traffic, crossing_seconds

HORIZON_SECONDS = 4 * 3600.0
RUNS = 200


def gate_eta_seconds(shares: np.ndarray, requests_per_second: float, event_rate: float,
                     ratio: float, margin: Margin, log_k: float, interval_seconds: float, *,
                     horizon_seconds: float = HORIZON_SECONDS, runs: int = RUNS
                     ) -> float | None:
    """Median seconds from now until the gate passes a canary of true ratio ``ratio``, among
    paths that have not passed after the intervals of ``shares`` (the canary's request share
    per interval so far; the last is held). None when fewer than half pass within
    ``horizon_seconds`` from now, or there is no traffic or no event to go on."""
    if len(shares) == 0 or requests_per_second <= 0 or event_rate <= 0:
        return None
    now = len(shares) * interval_seconds
    extra = max(1, math.ceil(horizon_seconds / interval_seconds))
    ramp = Ramp(np.concatenate([np.asarray(shares, dtype=float),
                                np.full(extra, float(shares[-1]))]), interval_seconds)
    times = crossing_seconds(ramp, Traffic(requests_per_second, event_rate),
                             min(ratio, 0.999 / event_rate), margin, log_k, upward=False,
                             runs=runs)
    later = np.sort(times[times > now]) - now
    if len(later) == 0:
        return None
    median = float(later[len(later) // 2])
    return None if math.isinf(median) else median
