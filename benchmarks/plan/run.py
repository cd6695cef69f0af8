"""The plan's forecasts against the real judge on a grid of traffic and error rates.

For each cell (requests per second × error rate × true ratio 2 or 1) on a 5→25→50% ramp of
10 minutes per step (the last held up to 2 h), the plan forecasts when 95% of 2× canaries
have failed and when half of the equal canaries pass the gate; ``RUNS`` simulated canaries per
cell are judged look by look by the real judge (``judged.py``). A claim holds when the share
decided by the forecast time is at least the claimed quantile minus two standard errors; a
forecast of "never" (a 2x canary inside the margin) holds when fewer than the quantile plus two
standard errors decide within the whole horizon (checked on a fifth of the runs).

    .venv/bin/python benchmarks/plan/run.py [--runs N] [--seed S]

Prints one line per cell and writes benchmarks/plan/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judged import Cell, check_cell

from analyzer.planning.forecast import Ramp

TRAFFIC = (20.0, 100.0, 400.0)
ERROR_RATES = (0.002, 0.01)
RATIOS = (2.0, 1.0)
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    ramp = Ramp.from_steps([(5, 600), (25, 600), (50, 600)], 30.0, hold_until=7200)
    cells = []
    began = time.time()
    for rps in TRAFFIC:
        for rate in ERROR_RATES:
            for ratio in RATIOS:
                result = check_cell(Cell(rps, rate, ratio), ramp, args.runs, args.seed)
                share = result["decided_by_predicted"]
                margin = 2 * result["standard_error"]
                result["holds"] = bool(share < result["quantile"] + margin
                                       if result["predicted_seconds"] is None
                                       else share >= result["quantile"] - margin)
                cells.append(result)
                print(f"{rps:>5g} req/s {rate:>6.1%} {ratio:g}x  {result['claim']:<11} "
                      f"predicted {result['predicted_seconds']}  observed "
                      f"{result['observed_seconds']}  decided by predicted {share}  "
                      f"holds {result['holds']}", flush=True)
    summary = {"cells": len(cells), "holding": sum(c["holds"] for c in cells),
               "runs": args.runs,
               "seed": args.seed, "seconds": round(time.time() - began, 1)}
    print(json.dumps(summary))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps({"summary": summary, "cells": cells},
                                                    indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
