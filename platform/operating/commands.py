"""The operating commands of `data-platform`: `backfill`, `check` and `status`.

    data-platform backfill DATASET (--all | --partitions K1,K2 | --failed | --missing)
                           [--dry-run] [--wait] [--url http://host:3000]
    data-platform check [DATASET ...] [--json]
    data-platform status [--url http://host:3000]
    data-platform materialize [DATASET ...]

Exit codes: 0 fine; 1 a backfill had failed files, or an ERROR check fails; 2 a request that
cannot be carried out (unknown dataset or partition, no instance, unreachable webserver).
"""

from __future__ import annotations

import argparse
import json
import sys

from .sources import OperatingError


def _contracts(names: list[str] | None = None) -> dict:
    from ..contracts import load_contracts

    contracts = load_contracts()
    unknown = [n for n in names or [] if n not in contracts]
    if unknown:
        raise OperatingError(f"unknown dataset(s) {', '.join(map(repr, unknown))}; known: "
                             f"{', '.join(sorted(contracts)) or 'none'}")
    return {n: contracts[n] for n in names} if names else contracts


def _source(url: str | None, required: bool = True):
    """A GraphQLSource for `url`, else a LocalSource on DAGSTER_HOME (None if there is none and
    it is not `required`)."""
    from .sources import GraphQLClient, GraphQLSource, LocalSource, local_instance

    if url:
        return GraphQLSource(GraphQLClient(url))
    instance = local_instance(required=required)
    if instance is None:
        return None
    import warnings

    import dagster as dg

    with warnings.catch_warnings():  # beta/preview notes are for code authors, not operators
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        from ..definitions import build_definitions

        defs = build_definitions()
    return LocalSource(instance, defs)


def _cmd_backfill(args) -> int:
    from . import backfill as bf

    if not args.url:
        _contracts([args.dataset])  # a webserver knows its own datasets
    source = _source(args.url)
    wanted = [p for p in (args.partitions or "").split(",") if p] or None
    keys, why = bf.select_partitions(source, args.dataset, all_=args.all, partitions=wanted,
                                     failed=args.failed, missing=args.missing)
    selectors = " ".join(f"--{n}" for n in ("all", "failed", "missing") if getattr(args, n))
    if wanted:
        selectors = f"--partitions {len(wanted)} {selectors}".strip()
    if not keys:
        print(f"{args.dataset}: nothing to backfill ({selectors})")
        return 0
    if args.dry_run:
        print(f"would backfill {len(keys)} file(s) of {args.dataset} "
              f"(cleaned/{args.dataset}, table/{args.dataset}):")
        for k in keys:
            print(f"  {k}\t{why[k]}")
        return 0
    if args.url:
        client = source.client
        backfill_id = bf.launch_remote(client, args.dataset, keys, selectors=selectors)
        poll = lambda: bf.remote_progress(client, backfill_id)  # noqa: E731
        where = f"{client.url}/runs/b/{backfill_id}?tab=partitions"
    else:
        backfill_id = bf.launch_local(source, args.dataset, keys, selectors=selectors)
        poll = lambda: bf.local_progress(source, backfill_id)  # noqa: E731
        where = f"the UI: Overview > Backfills > {backfill_id}"
        warning = bf.daemon_warning(source)
        if warning:
            print(warning, file=sys.stderr)
    print(f"launched backfill {backfill_id}: {len(keys)} file(s) of {args.dataset}")
    print(f"follow it in {where}" + ("" if args.wait else ", or rerun with --wait"))
    if not args.wait:
        return 0
    final = bf.follow(poll, interval=args.interval, timeout=args.timeout)
    if final.succeeded:
        return 0
    print(f"backfill {backfill_id} ended {final.status} with {final.failed} failed file(s); "
          f"`data-platform backfill {args.dataset} --failed --dry-run` lists them",
          file=sys.stderr)
    return 1


CHECK_FIELDS = ("asset", "check", "severity", "passed", "detail", "source")


def platform_resources():
    """The storage and catalog resources of PLATFORM_ENV (local folders and DuckDB, or S3 and
    Glue with the deploy's variables), configured as the runs see them."""
    import os

    import dagster as dg

    from ..definitions import resources_for

    res = resources_for(os.environ.get("PLATFORM_ENV", "local"))
    # Neither resource holds anything open: they stay usable once built.
    with dg.build_resources({"storage": res["storage"], "catalog": res["catalog"]}) as built:
        return built.storage, built.catalog


def check_rows(names: list[str] | None = None) -> list[dict]:
    """Run the table-level checks of the datasets (all by default) and read the latest check
    results from the local instance if there is one; one dict per check (CHECK_FIELDS).
    Raises OperatingError for an unknown dataset."""
    from ..assets.clean import effective_contract
    from ..cleaning import CleanError
    from ..tables.store import load_table, rejected_name
    from .checks import committed_checks, monitoring_checks
    from .state import dataset_state

    contracts = _contracts(names)
    storage, catalog = platform_resources()
    lake, ice = storage.lake(), catalog.iceberg()
    source = _source(None, required=False)
    rows = []
    for ds, contract in contracts.items():
        data = load_table(ice, catalog.namespace, ds)
        rejected = load_table(ice, catalog.namespace, rejected_name(ds))
        try:
            contract = effective_contract(contract, lake)
        except CleanError:
            pass  # no schema recorded yet: then there is no table either
        found = [(r, "committed snapshot") for r in committed_checks(contract, data, rejected,
                                                                       lake)]
        for r, where in found + monitoring_checks(contract, data, lake):
            rows.append({"asset": f"table/{ds}", "check": r.name, "severity": r.severity,
                         "passed": r.passed, "detail": r.reason or _brief(r.metadata),
                         "source": where})
        if source is None:
            continue
        for v in dataset_state(source, ds).checks:
            if v.latest is None:
                continue
            bad = v.errors or v.warnings
            detail = "; ".join(f"{k}: {why}" for k, why in list(bad.items())[:5])
            if len(bad) > 5:
                detail += f" (+{len(bad) - 5} more)"
            rows.append({"asset": v.asset, "check": v.check, "severity": v.severity,
                         "passed": v.passed, "detail": detail,
                         "source": "latest runs", "failing_files": sorted(bad)})
    return rows


def _brief(meta: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in meta.items() if not isinstance(v, (dict, list)))


def _cmd_check(args) -> int:
    rows = check_rows(args.datasets or None)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        head = ("asset", "check", "severity", "passed", "source")
        cells = [(r["asset"], r["check"], r["severity"], "yes" if r["passed"] else "NO",
                  r["source"]) for r in rows]
        widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
        for row, r in zip([head, *cells], [None, *rows]):
            line = "  ".join(c.ljust(w) for c, w in zip(row, widths))
            print(line + "  " + ("detail" if r is None else r["detail"]))
    return 1 if any(not r["passed"] and r["severity"] == "ERROR" for r in rows) else 0


def _cmd_status(args) -> int:
    from ..tables.store import load_table, rejected_name
    from .state import dataset_state
    from .status import dataset_status, render

    contracts = _contracts(None)
    storage, catalog = platform_resources()
    ice = catalog.iceberg()
    source = _source(args.url, required=False)
    rows = []
    for ds in sorted(contracts):
        state = dataset_state(source, ds) if source is not None else None
        rows.append(dataset_status(
            ds, storage.raw(), storage.lake(), load_table(ice, catalog.namespace, ds),
            load_table(ice, catalog.namespace, rejected_name(ds)), state))
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
    else:
        print("\n".join(render(rows)))
    return 0


def add_parsers(sub) -> None:
    """Add `backfill`, `check` and `status` to the `data-platform` subcommand parsers."""
    bf = sub.add_parser("backfill", help="launch an asset backfill of a dataset's files "
                                         "(run by the Dagster daemon, listed under Backfills)")
    bf.add_argument("dataset")
    bf.add_argument("--all", action="store_true", help="every known file")
    bf.add_argument("--partitions", help="comma-separated file keys (relative to raw/DATASET/)")
    bf.add_argument("--failed", action="store_true",
                    help="files whose latest run failed or that an ERROR check fails")
    bf.add_argument("--missing", action="store_true", help="files never materialized")
    bf.add_argument("--dry-run", action="store_true", help="print what would be launched")
    bf.add_argument("--wait", action="store_true",
                    help="follow the backfill; exit 1 if any file failed")
    bf.add_argument("--url", help="a deployed webserver (http://host:port) instead of the "
                                  "local instance in DAGSTER_HOME")
    bf.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    bf.add_argument("--timeout", type=float, default=None,
                    help="with --wait: give up waiting after this many seconds")
    bf.set_defaults(func=_guarded(_cmd_backfill))
    ck = sub.add_parser("check", help="check what is committed (no re-materialization); "
                                      "exit 1 if an ERROR check fails")
    ck.add_argument("datasets", nargs="*", metavar="DATASET")
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(func=_guarded(_cmd_check))
    stat = sub.add_parser("status", help="per dataset: files seen, committed, failed, waiting")
    stat.add_argument("--url", help="read Dagster's side from a webserver (http://host:port)")
    stat.add_argument("--json", action="store_true")
    stat.set_defaults(func=_guarded(_cmd_status))
    mat = sub.add_parser("materialize", help="ingest every raw file of the datasets now, in "
                                             "this process (no daemon; for CI and scripts)")
    mat.add_argument("datasets", nargs="*", metavar="DATASET")
    mat.set_defaults(func=_guarded(lambda args: _materialize(args.datasets or None)))


def _materialize(names):
    from .materialize import run

    return run(names)


def _guarded(command):
    """Run `command`, turning an OperatingError into a message and exit code 2."""
    def run(args) -> int:
        try:
            return command(args)
        except OperatingError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return run
