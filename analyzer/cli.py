"""The ``canary-analyzer`` command line.

Exit status: 0 when the work was done (whatever the verdicts), 2 for input that can never work
(a flag, a config, a dataset; the message names the file and the field), 1 when a dependency
(Prometheus, the store, Kubernetes) could not answer now. One table, ``EXIT_CODES``, maps the
error tree of ``analyzer.errors`` to these.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from analyzer import progress
from analyzer.config import CanaryConfig, load_config
from analyzer.errors import AnalyzerError, InputError, UnavailableError
from analyzer.logs import LOG_FORMATS
from analyzer.mesh.cli import add_weights_parser
from analyzer.metrics.connection import (
    PrometheusConnection,
    add_connection_flags,
    connection_from_args,
)
from analyzer.metrics.dataset import DatasetError
from analyzer.preview import add_preview_parser

if TYPE_CHECKING:  # the plan's modules are imported when it runs
    from analyzer.planning.history import Profile
    from analyzer.planning.steps import Step

# The bundled example canaries of a source checkout (make demo runs from one).
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "datasets"
EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_BAD_INPUT = 2


EXIT_CODES: tuple[tuple[type[AnalyzerError], int], ...] = (
    (InputError, EXIT_BAD_INPUT),
    (UnavailableError, EXIT_UNAVAILABLE),
)
"""First match wins."""


class UsageError(InputError):
    """Bad input for a command; the message is printed and the exit status is 2."""


def _connection(args: argparse.Namespace) -> PrometheusConnection:
    return connection_from_args(args)


def _config(path: str | None) -> CanaryConfig | None:
    return load_config(path) if path else None


def cmd_replay(args: argparse.Namespace) -> int:
    from analyzer.replay import load_datasets, replay_dataset
    from analyzer.timeline import format_timeline

    config = _config(args.config)
    datasets = load_datasets([Path(p) for p in args.datasets])
    for dataset in datasets:
        with progress.looks(len(dataset), f"replay {dataset.name}",
                            progress.wanted(args.json)) as on_look:
            result = replay_dataset(dataset, config, on_look)
        if args.json:
            print(json.dumps(result.to_json(), separators=(",", ":")), flush=True)
        else:
            print(format_timeline(result), flush=True)
    return EXIT_OK


def _format_backtest(summary: dict) -> str:
    lines = ["confusion (expected → verdict):",
             f"  {'expected':<12} {'pass':>6} {'fail':>6} {'inconclusive':>13}"]
    for expected, row in sorted(summary["confusion"].items()):
        lines.append(f"  {expected:<12} {row['pass']:>6} {row['fail']:>6} "
                     f"{row['inconclusive']:>13}")
    lines.append("detection delay by family (seconds after start):")
    for family, entry in summary["families"].items():
        median = entry["median_seconds_to_fail"]
        p90 = entry["p90_seconds_to_fail"]
        delay = "" if median is None else f"  median {median:.0f}  p90 {p90:.0f}"
        lines.append(f"  {family:<22} failed {entry['failed']:>4}/{entry['datasets']:<4}{delay}")
    ffr = summary["false_fail_rate"]
    det = summary["detection_rate"]
    lines.append(
        f"summary: {summary['datasets']} datasets; false fails "
        f"{summary['false_fail']}/{summary['good']}"
        + ("" if ffr is None else f" ({ffr:.1%})")
        + f"; detected {summary['detected']}/{summary['bad']}"
        + ("" if det is None else f" ({det:.1%})")
        + ("" if summary["median_seconds_to_fail"] is None
           else f"; median time to fail {summary['median_seconds_to_fail']:.0f} s"))
    return "\n".join(lines)


def cmd_backtest(args: argparse.Namespace) -> int:
    from analyzer.replay import backtest_summary, dataset_paths, load_datasets, replay_dataset

    config = _config(args.config)
    directory = Path(args.directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    paths = dataset_paths(directory)
    if not paths:
        raise UsageError(f"{directory}: no *.json datasets")
    datasets = load_datasets(paths)
    with progress.looks(sum(len(d) for d in datasets), f"backtest {len(datasets)} datasets",
                        progress.wanted(args.json)) as on_look:
        results = [replay_dataset(d, config, on_look) for d in datasets]
    summary = backtest_summary(results)
    if args.json:
        print(json.dumps({"summary": summary,
                          "datasets": [dict(r.to_json(), expected=r.expected)
                                       for r in results]}))
    else:
        print(_format_backtest(summary))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    try:  # tooling of a source checkout: the service and its image do without it
        from devtools.demo import run_demo
    except ImportError:
        raise UsageError("demo: runs from a source checkout (make demo); this installation "
                         "has no devtools package") from None
    return run_demo(examples=Path(args.examples), offline=args.offline)


def cmd_serve(args: argparse.Namespace) -> int:
    from fastapi import FastAPI

    from analyzer.api import serving
    from analyzer.api.app import Settings, create_app
    from analyzer.api.auth import TokenFileError
    from analyzer.config import load_config_dir
    from analyzer.database_url import resolve_database_url
    from analyzer.logs import configure_logging
    from analyzer.store.retention import check_size_limit_applies, parse_retention, parse_size

    # Every check below ends serve before it listens: 2 for a bad flag, config dir or token
    # file, 1 for a database it cannot open, migrate or write.
    configs = load_config_dir(args.config_dir)
    connection = _connection(args)
    database_url = resolve_database_url(args.database, args.database_file)
    retention = parse_retention(args.retention)
    size_limit = None if args.store_size_limit is None else parse_size(args.store_size_limit)
    if size_limit is not None:
        check_size_limit_applies(database_url)
    settings = Settings(prometheus_url=args.prometheus, config_dir=args.config_dir,
                        database_url=database_url, kubeconfig=args.kubeconfig,
                        in_cluster=args.in_cluster, configs=configs,
                        token_file=args.token_file, prometheus=connection,
                        allow_inline_promql=args.allow_inline_promql, retention=retention,
                        store_size_limit=size_limit)
    if args.workers < 1:
        raise UsageError("--workers: at least 1")
    try:
        checked = create_app(settings)
    except TokenFileError as exc:
        raise UsageError(f"--token-file: {exc}") from None
    app: FastAPI | None = checked
    if args.workers > 1:
        # Checked above; each worker builds its own app (store pool, telemetry) after the
        # fork, so the parent holds no database connections for the children to inherit.
        checked.state.store.close()
        app = None
    # Only now: the exits above print one plain line to stderr.
    configure_logging(args.log_format)
    code = serving.run(lambda: app if app is not None else create_app(settings),
                       args.host, args.port, args.workers, pin=args.cpu_pinning)
    return EXIT_OK if code == 0 else code


def _cli_time(value: str | None, flag: str) -> datetime | None:
    from analyzer.metrics.dataset import parse_time

    if value is None:
        return None
    try:
        number: float | str = float(value)
    except ValueError:
        number = value
    try:
        return parse_time(number, flag)
    except DatasetError as exc:
        raise UsageError(str(exc)) from None


def cmd_judge(args: argparse.Namespace) -> int:
    from analyzer.analysis import NO_REVISION_NOTE, Analyzer
    from analyzer.config import default_config
    from analyzer.metrics.prometheus import PrometheusClient
    from analyzer.metrics.source import PrometheusSource
    from analyzer.request import RequestError, parse_request

    config = _config(args.config) or default_config()
    connection = _connection(args)
    end = _cli_time(args.end, "--end") or datetime.now(UTC)
    start = _cli_time(args.start, "--start") or end - timedelta(hours=1)
    body = {"namespace": args.namespace, "rollout": args.rollout,
            "canary_service": args.canary_service, "baseline_service": args.baseline_service,
            "config": config.name, "start": start.timestamp(), "end": end.timestamp(),
            "final": args.final}
    source = PrometheusSource(lambda on_query: PrometheusClient(connection, on_query=on_query))
    analyzer = Analyzer({config.name: config}, source)
    try:
        answer = analyzer.run(parse_request(body))
    except RequestError as exc:
        flag = "--" + exc.field.split(".")[0].replace("_", "-")
        raise UsageError(f"{flag}: {exc.message}") from None
    if args.json:
        print(json.dumps(answer))
        return EXIT_OK
    print(f"verdict: {answer['verdict']}  score: {answer['score']:.1f}")
    print(f"window:  {answer['window']['start']} → {answer['window']['end']}")
    print(f"reason:  {answer['reason']}")
    for note in answer["notes"]:
        if note != NO_REVISION_NOTE:  # one-shot judge calls keep no session
            print(f"note:    {note}")
    share = answer["traffic"]["observed_canary_share"]
    if share is not None:
        print(f"canary share of requests: {share:.1%}")
    for metric in answer["metrics"]:
        effect = metric["effect"]
        shown = "n/a" if effect is None else f"{effect:.3g}"
        print(f"  {metric['name']:<20} {metric['classification']:<7} canary/baseline {shown}"
              f"  {metric['reason']}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from analyzer.config import default_config
    from analyzer.metrics.dataset import Dataset, write_dataset
    from analyzer.metrics.istio import SelectorError, SideSelectors, fetch_window
    from analyzer.metrics.prometheus import PrometheusClient

    connection = _connection(args)
    start = _cli_time(args.start, "--start")
    end = _cli_time(args.end, "--end")
    assert start is not None and end is not None  # required flags
    step = _duration(args.step)
    if end <= start or (end - start).total_seconds() < step:
        raise UsageError("--end: must be at least one --step after --start")
    try:
        sides = SideSelectors(args.namespace, {"destination_service_name": args.canary_service},
                              {"destination_service_name": args.baseline_service})
    except SelectorError as exc:
        raise UsageError(f"--canary-service/--baseline-service/--namespace: {exc}") from None
    metrics = [m for m in default_config().metrics
               if m.kind in ("istio-error-rate", "istio-latency")]
    output = Path(args.output)
    if not output.parent.is_dir():
        raise UsageError(f"-o: folder {str(output.parent)!r} does not exist")
    client = PrometheusClient(connection)
    try:
        window = fetch_window(client, metrics, sides, start, end, step)
    except ValueError as exc:  # fetch_window's own check of the step
        raise UsageError(f"--step: {exc}") from None
    finally:
        client.close()
    name = args.name or f"{args.namespace}-{args.canary_service}"
    dataset = Dataset(name=name, interval_seconds=step, start=start,
                      timestamps=window.timestamps, metrics=window.series,
                      labels={"namespace": args.namespace, "canary": args.canary_service,
                              "baseline": args.baseline_service, "source": "prometheus"})
    write_dataset(dataset, args.output)
    print(f"wrote {args.output}: {len(window.timestamps)} intervals of {step:g} s")
    return EXIT_OK


def _duration(text: str, flag: str = "--step") -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    else:
        number, suffix = text, "s"
    try:
        value = float(number) * units[suffix]
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a duration (e.g. 30s, 1m)") from None
    if not value >= 1:
        raise UsageError(f"{flag}: {text!r} must be at least 1s")
    return value


def _plan_history(args: argparse.Namespace, config: CanaryConfig) -> Profile:
    from analyzer.metrics.dataset import read_dataset
    from analyzer.metrics.prometheus import PrometheusClient
    from analyzer.planning import history

    if args.dataset:
        if args.prometheus:
            raise UsageError("--dataset and --prometheus: choose one source of history")
        return history.from_dataset(read_dataset(args.dataset), config, args.dataset)
    if not args.prometheus:
        raise UsageError("--prometheus: give a Prometheus (with --namespace and --service) "
                         "or --dataset FILE for the history")
    for flag, value in (("--namespace", args.namespace), ("--service", args.service)):
        if not value:
            raise UsageError(f"{flag}: needed with --prometheus")
    connection = _connection(args)
    lookback = timedelta(seconds=_duration(args.lookback, "--lookback"))
    if lookback < timedelta(hours=1):
        raise UsageError("--lookback: must be at least 1h")
    end = _cli_time(args.end, "--end") or datetime.now(UTC)
    client = PrometheusClient(connection)
    try:
        return history.from_prometheus(client, config, args.namespace, args.service, end,
                                       lookback)
    finally:
        client.close()


def _plan_steps(args: argparse.Namespace) -> tuple[Step, ...]:
    from analyzer.planning import steps

    analysis = _duration(args.analysis_duration, "--analysis-duration")
    given = [flag for flag, value in (("--steps", args.steps),
                                      ("--rollout-file", args.rollout_file),
                                      ("--rollout", args.rollout)) if value]
    if len(given) != 1:
        raise UsageError("--steps, --rollout-file or --rollout: give exactly one")
    if args.steps:
        return steps.parse_steps_flag(args.steps)
    if args.rollout_file:
        return steps.read_rollout_file(args.rollout_file, analysis)
    from analyzer.mesh.client import KubeClient
    from analyzer.mesh.rollout import GROUP, KIND, PLURAL, VERSION

    if not args.namespace:
        raise UsageError("--namespace: needed with --rollout")
    with KubeClient.from_kubeconfig(args.kubeconfig) as api:
        obj = api.get(GROUP, VERSION, args.namespace, PLURAL, args.rollout, kind=KIND)
    return steps.rollout_steps(obj, f"Rollout {args.namespace}/{args.rollout}", analysis)


def cmd_plan(args: argparse.Namespace) -> int:
    from analyzer.config import default_config
    from analyzer.planning.plan import Settings, make_plan
    from analyzer.planning.text import format_plan

    interval = _duration(args.interval, "--interval")
    max_seconds = _duration(args.max_duration, "--max-duration")
    if not 1.0 < args.regression <= 100.0:
        raise UsageError("--regression: must be above 1 and at most 100 (a ratio, e.g. 1.5)")
    config = _config(args.config) or default_config()
    planned = _plan_steps(args)
    if max_seconds < sum(s.seconds for s in planned):
        raise UsageError("--max-duration: shorter than the given steps")
    if max_seconds > 48 * 3600:
        raise UsageError("--max-duration: at most 48h (a canary that needs longer needs "
                         "another weight or margin, which the plan's advice says)")
    profile = _plan_history(args, config)
    if not profile.hourly_requests_per_second or profile.busy <= 0:
        raise UsageError("the history has no requests: nothing to plan from")
    plan = make_plan(Settings(config, planned, profile, interval, args.regression, max_seconds))
    print(json.dumps(plan) if args.json else format_plan(plan))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary-analyzer",
        description="Anytime-valid canary analysis for Argo Rollouts, Istio and Prometheus.")
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="judge recorded canaries interval by interval")
    replay.add_argument("datasets", nargs="+", metavar="DATASET")
    replay.add_argument("--config", metavar="FILE")
    replay.add_argument("--json", action="store_true", help="JSON Lines, one per dataset")
    replay.set_defaults(func=cmd_replay)

    backtest = sub.add_parser("backtest", help="replay a directory of labelled datasets")
    backtest.add_argument("directory", metavar="DIR")
    backtest.add_argument("--config", metavar="FILE")
    backtest.add_argument("--json", action="store_true")
    backtest.set_defaults(func=cmd_backtest)

    demo = sub.add_parser("demo", help="the end-to-end story on bundled example canaries")
    demo.add_argument("--offline", action="store_true",
                      help="replay the examples without starting Prometheus and the service")
    demo.add_argument("--examples", default=str(EXAMPLES),
                      metavar="DIR", help=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="run the HTTP service Argo Rollouts calls")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes sharing the port (default 1; a judge call is "
                            "CPU-bound, so up to one per core)")
    serve.add_argument("--cpu-pinning", action=argparse.BooleanOptionalAction, default=True,
                       help="run each process on one CPU (default: on; with its threads on "
                            "several cores, handing the GIL over cost a fifth to a half more "
                            "CPU per call)")
    serve.add_argument("--prometheus", default="http://localhost:9090", metavar="URL")
    add_connection_flags(serve)
    serve.add_argument("--config-dir", metavar="DIR", help="canary configs (*.yaml, *.json)")
    database = serve.add_mutually_exclusive_group()
    database.add_argument("--database", metavar="URL",
                          help="SQLAlchemy URL or SQLite file path (default: "
                               "$CANARY_ANALYZER_DATABASE, else canary-analyzer.db); a URL "
                               "with a password belongs in --database-file or the variable, "
                               "not on the command line")
    database.add_argument("--database-file", metavar="PATH",
                          help="read the database URL from PATH (e.g. a mounted Secret)")
    serve.add_argument("--token-file", metavar="PATH",
                       help="require 'Authorization: Bearer <token>' on /api/v1/*, the token "
                            "read from PATH (re-read when it changes, e.g. a Secret volume)")
    serve.add_argument("--allow-inline-promql", action="store_true",
                       help="let a request's inline config run its own PromQL (off: inline "
                            "configs may use the built-in Istio metrics only)")
    serve.add_argument("--retention", default="30d", metavar="DURATION",
                       help="prune stored evaluations older than this, in the background "
                            "(sessions keep a summary); e.g. 30d, 12h, 2w (default: "
                            "%(default)s)")
    serve.add_argument("--store-size-limit", metavar="SIZE",
                       help="SQLite only: also prune the oldest evaluations while the "
                            "database holds more than SIZE (e.g. 512Mi), so a volume with a "
                            "sizeLimit never fills; leave room for a WAL of up to 64Mi")
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="json",
                       help="json: one JSON object per line on stdout, for a log platform "
                            "(default); text: for reading by hand")
    kube = serve.add_mutually_exclusive_group()
    kube.add_argument("--kubeconfig", metavar="PATH",
                      help="read canary weights and revisions (for requests without "
                           "canary_weight or canary_revision) from Rollouts and "
                           "VirtualServices with this kubeconfig")
    kube.add_argument("--in-cluster", action="store_true",
                      help="read canary weights and revisions with the pod's service account")
    serve.set_defaults(func=cmd_serve)

    add_weights_parser(sub)
    add_preview_parser(sub)

    one = sub.add_parser("judge", help="one judgement from Prometheus, as the API gives it")
    _prometheus_flags(one)
    one.add_argument("--rollout", required=True)
    one.add_argument("--start", metavar="T", help="RFC 3339 or unix seconds "
                                                  "(default: 1 h before --end)")
    one.add_argument("--end", metavar="T", help="RFC 3339 or unix seconds (default: now)")
    one.add_argument("--config", metavar="FILE")
    one.add_argument("--final", action="store_true", help="judge as the promotion gate")
    one.add_argument("--json", action="store_true", help="the API's JSON answer")
    one.set_defaults(func=cmd_judge)

    export = sub.add_parser("export", help="write a canary-dataset/v1 file from Prometheus")
    _prometheus_flags(export)
    export.add_argument("--start", required=True, metavar="T")
    export.add_argument("--end", required=True, metavar="T")
    export.add_argument("--step", default="30s", help="interval length (default: %(default)s)")
    export.add_argument("--name", help="dataset name (default: NAMESPACE-CANARY_SERVICE)")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    export.set_defaults(func=cmd_export)

    plan = sub.add_parser("plan", help="how long each canary step must run for the gate to "
                                       "decide, from the stable Service's history")
    source = plan.add_argument_group("history (one of)")
    source.add_argument("--prometheus", metavar="URL")
    source.add_argument("--dataset", metavar="FILE", help="a canary-dataset/v1 file")
    add_connection_flags(plan)
    plan.add_argument("--namespace", metavar="NS")
    plan.add_argument("--service", metavar="S", help="the stable Service")
    plan.add_argument("--lookback", default="7d", help="history to read (default: %(default)s)")
    plan.add_argument("--end", metavar="T", help="end of the history, RFC 3339 or unix "
                                                 "seconds (default: now)")
    given = plan.add_argument_group("steps (one of)")
    given.add_argument("--steps", metavar="W:D,...", help="e.g. 5:10m,25:10m,50:10m")
    given.add_argument("--rollout-file", metavar="FILE", help="a Rollout YAML file")
    given.add_argument("--rollout", metavar="NAME", help="a live Rollout (with --namespace)")
    plan.add_argument("--kubeconfig", metavar="PATH", help="for --rollout (default: "
                                                           "$KUBECONFIG or ~/.kube/config)")
    plan.add_argument("--analysis-duration", default="5m", metavar="D",
                      help="how long an analysis step runs (default: %(default)s, the "
                           "bundled template's 10 measurements 30 s apart)")
    plan.add_argument("--config", metavar="FILE")
    plan.add_argument("--interval", default="30s",
                      help="time between the judge's looks (default: %(default)s)")
    plan.add_argument("--regression", type=float, default=2.0, metavar="R",
                      help="a second regression to plan for, as a ratio (default: 2)")
    plan.add_argument("--max-duration", default="4h", metavar="D",
                      help="longest ramp to suggest (default: %(default)s)")
    plan.add_argument("--json", action="store_true", help="the plan as JSON (docs/plan.md)")
    plan.set_defaults(func=cmd_plan)
    return parser


def _prometheus_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, metavar="URL")
    add_connection_flags(parser)
    parser.add_argument("--namespace", required=True, metavar="NS")
    parser.add_argument("--canary-service", required=True, metavar="S")
    parser.add_argument("--baseline-service", required=True, metavar="S")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AnalyzerError as exc:
        print(f"canary-analyzer {args.command}: {exc.message}", file=sys.stderr)
        return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


if __name__ == "__main__":
    sys.exit(main())
