"""Candidate settings for the benchmarks: a config with the error-rate margin and the gate's
level overridden, so that gate.py and run.py compare candidates on the same code path as the
shipped default."""

from __future__ import annotations

from analyzer.config import CanaryConfig

METRIC = "error-rate"


def override(config: CanaryConfig, *, ratio: float | None = None,
             absolute: float | None = None, gate_alpha: float | None = None) -> CanaryConfig:
    """``config`` with ``error-rate``'s ``allowed_increase`` / ``allowed_absolute_increase``
    and ``judge.gate_alpha`` replaced where given (None keeps the config's value)."""
    if gate_alpha is not None:
        config = config.model_copy(update={
            "judge": config.judge.model_copy(update={"gate_alpha": gate_alpha})})
    update = {k: v for k, v in (("allowed_increase", ratio),
                                ("allowed_absolute_increase", absolute)) if v is not None}
    if not update:
        return config
    metrics = tuple(m.model_copy(update=update) if m.name == METRIC else m
                    for m in config.metrics)
    return config.model_copy(update={"metrics": metrics})
