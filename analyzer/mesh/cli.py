"""``canary-analyzer weights get|set`` (DESIGN §7), registered by :func:`add_weights_parser`.

Kept out of ``analyzer/cli.py`` so the main parser only has to call one function. Exit status:
0 done, 1 Kubernetes said no or could not be reached (404/403/409, connection), 2 bad input —
the message names the flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command imports the Kubernetes client only when it runs
    from analyzer.mesh.virtualservice import MeshError, WeightReading

EXIT_OK = 0
EXIT_KUBE = 1
EXIT_BAD_INPUT = 2

_STOP_NOTE = ("note: while the rollout progresses the Argo Rollouts controller re-applies its "
              "weight on its next reconcile; for a lasting stop also run "
              "`kubectl argo rollouts abort ROLLOUT`")


def add_weights_parser(subparsers: Any) -> None:
    """Adds ``weights`` to the ``add_subparsers()`` object of the main parser."""
    parser = subparsers.add_parser(
        "weights", help="read or set the canary weight of an Istio VirtualService route",
        description="Read or set the canary/stable weights of one HTTP route. Host-level "
                    "splitting: pass --canary-service and --stable-service; otherwise the "
                    "route is split by DestinationRule subsets (--canary-subset/"
                    "--stable-subset). Emergency stop: `weights set --canary 0`.")
    parser.add_argument("action", choices=["get", "set"])
    parser.add_argument("--namespace", required=True, metavar="NS")
    parser.add_argument("--virtualservice", required=True, metavar="VS")
    parser.add_argument("--route", metavar="R",
                        help="spec.http[].name (default: the only HTTP route)")
    parser.add_argument("--canary", metavar="N", help="set: canary weight 0-100; stable gets "
                                                      "the rest")
    parser.add_argument("--canary-service", metavar="S", help="host-level: canary Service")
    parser.add_argument("--stable-service", metavar="S", help="host-level: stable Service")
    parser.add_argument("--canary-subset", default="canary", metavar="NAME",
                        help="subset-level: canary subset (default: %(default)s)")
    parser.add_argument("--stable-subset", default="stable", metavar="NAME",
                        help="subset-level: stable subset (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="set: print the merge patch and send nothing")
    kube = parser.add_mutually_exclusive_group()
    kube.add_argument("--kubeconfig", metavar="PATH",
                      help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    kube.add_argument("--in-cluster", action="store_true",
                      help="use the pod's service account")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(func=cmd_weights)


def _fail(code: int, message: str) -> int:
    print(f"canary-analyzer weights: {message}", file=sys.stderr)
    return code


def _flag_for(exc: MeshError, args: argparse.Namespace) -> str:
    """The command-line flag a shape error is about."""
    from analyzer.mesh.virtualservice import RouteNotFound
    from analyzer.mesh.weights import InvalidWeight

    if isinstance(exc, RouteNotFound):
        return "--route"
    if isinstance(exc, InvalidWeight):
        return "--canary"
    if exc.field in ("canary", "stable"):
        kind = "service" if args.canary_service else "subset"
        return f"--{exc.field}-{kind}"
    return f"({exc.field})"


def _describe(reading: WeightReading) -> str:
    route = reading.route or "(the only route)"
    text = (f"route {route} ({reading.style}-level): canary {reading.canary_weight}, stable "
            f"{reading.stable_weight}")
    if reading.other_weight:
        text += f", others {reading.other_weight}"
    return text + f" [resourceVersion {reading.resource_version}]"


def cmd_weights(args: argparse.Namespace) -> int:
    """Handler for ``weights``; returns the exit status and never raises for expected errors."""
    from analyzer.mesh.client import KubeClient, KubeConfigError, KubeError, WeightConflict
    from analyzer.mesh.virtualservice import DestinationNotFound, MeshError, Split, read_weights
    from analyzer.mesh.weights import set_canary_weight

    if args.action == "set" and args.canary is None:
        return _fail(EXIT_BAD_INPUT, "--canary N is required for `weights set`")
    if args.action == "get" and (args.canary is not None or args.dry_run):
        return _fail(EXIT_BAD_INPUT, "--canary and --dry-run only apply to `weights set`")
    if (args.canary_service is None) != (args.stable_service is None):
        return _fail(EXIT_BAD_INPUT, "--canary-service and --stable-service go together "
                                     "(host-level splitting)")
    try:
        client = (KubeClient.in_cluster() if args.in_cluster
                  else KubeClient.from_kubeconfig(args.kubeconfig))
    except KubeConfigError as exc:
        flag = "--in-cluster" if args.in_cluster else "--kubeconfig"
        return _fail(EXIT_BAD_INPUT, f"{flag}: {exc}")
    name = f"VirtualService {args.namespace}/{args.virtualservice}"
    try:
        with client:
            if args.action == "get":
                split = Split(args.canary_service, args.stable_service, args.canary_subset,
                              args.stable_subset)
                reading = read_weights(client, args.namespace, args.virtualservice, args.route,
                                       split=split)
                if args.json:
                    print(json.dumps(reading.to_json()))
                else:
                    print(f"{name} {_describe(reading)}")
                if reading.warning:
                    print(f"warning: {reading.warning}", file=sys.stderr)
                return EXIT_OK
            change = set_canary_weight(
                client, args.namespace, args.virtualservice, args.route, args.canary,
                canary_service=args.canary_service, stable_service=args.stable_service,
                canary_subset=args.canary_subset, stable_subset=args.stable_subset,
                dry_run=args.dry_run)
    except MeshError as exc:
        hint = ""
        if isinstance(exc, DestinationNotFound) and args.canary_service is None:
            hint = " (for host-level splitting pass --canary-service and --stable-service)"
        return _fail(EXIT_BAD_INPUT, f"{_flag_for(exc, args)}: {exc}{hint}")
    except WeightConflict as exc:
        return _fail(EXIT_KUBE, f"conflict: {exc}")
    except KubeError as exc:
        return _fail(EXIT_KUBE, str(exc))
    if args.json:
        print(json.dumps({"dry_run": change.dry_run, "before": change.before.to_json(),
                          "after": change.after.to_json() if change.after else None,
                          "patch": change.patch}))
    elif change.dry_run:
        print(f"dry run: would send this merge patch to {name} (nothing sent):")
        print(json.dumps(change.patch, indent=2))
    else:
        assert change.after is not None
        print(f"{name} was {_describe(change.before)}")
        print(f"{name} now {_describe(change.after)}")
    if not change.dry_run and change.after is not None and change.after.canary_weight == 0:
        print(_STOP_NOTE, file=sys.stderr)
    return EXIT_OK

