"""Copies the canonical dashboards into the Kustomize component that ships them.

Kustomize refuses files outside a kustomization's root ("security; file … is not in or below
…") unless every user passes ``--load-restrictor LoadRestrictionsNone``, so the component
cannot point at ``dashboards/*.json``. The JSON in ``dashboards/`` stays the one to edit; run
``python dashboards/sync.py`` after editing (``--check`` fails when a copy is stale, and
``tests/test_dashboards.py`` checks the copies are byte-identical).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "dashboards"
COMPONENT = ROOT / "deploy" / "components" / "dashboards"
DASHBOARDS = ("canary-analysis.json", "canary-analyzer-service.json")


def stale() -> list[str]:
    """Names of component copies that differ from (or lack) their canonical file."""
    return [name for name in DASHBOARDS
            if not (COMPONENT / name).exists()
            or (COMPONENT / name).read_bytes() != (SOURCE / name).read_bytes()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale copies")
    args = parser.parse_args(argv)
    outdated = stale()
    if args.check:
        for name in outdated:
            print(f"stale: {COMPONENT / name} (run python dashboards/sync.py)", file=sys.stderr)
        return 1 if outdated else 0
    for name in outdated:
        (COMPONENT / name).write_bytes((SOURCE / name).read_bytes())
        print(f"updated {COMPONENT / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
