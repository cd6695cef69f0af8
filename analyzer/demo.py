"""``canary-analyzer demo``: the bundled example canaries judged as Rollouts would judge them."""

from __future__ import annotations

from pathlib import Path

from analyzer.replay import dataset_paths, load_datasets, replay_dataset
from analyzer.timeline import format_timeline


def run_demo(examples: Path) -> int:
    paths = dataset_paths(examples)
    if not paths:
        print(f"no example datasets in {examples}")
        return 2
    print(f"Replaying {len(paths)} bundled canaries, one judge call per 30 s interval "
          "(✓ pass, ? inconclusive, ✗ fail):\n")
    for dataset in load_datasets(paths):
        print(format_timeline(replay_dataset(dataset)))
        print()
    return 0
