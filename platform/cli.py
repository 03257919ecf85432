"""The `data-platform` command: draft a contract from a sample file, query the local catalog.

    data-platform contract draft FILE --dataset NAME [--out DIR] [--delimiter ';'] [--force]
    data-platform contract draft FOLDER|IMAGE|ARCHIVE --dataset NAME   (an image contract)
    data-platform query "SELECT * FROM orders LIMIT 5" [--as-of "2026-11-22 10:00"]
    data-platform history DATASET [--rejected]
    data-platform rollback DATASET --to SNAPSHOT_ID
    data-platform backfill DATASET (--all | --partitions K1,K2 | --failed | --missing)
                           [--dry-run] [--wait] [--url http://host:port]
    data-platform check [DATASET ...] [--json]
    data-platform status [--url http://host:port] [--json]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb
import yaml

from .cleaning import CleanError, _compression, infer_columns
from .contracts import (
    EXTENSIONS,
    Column,
    Contract,
    ContractError,
    FileFormat,
    parse_contract,
)
from .sql import quote_ident


def _format_for(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    name = path.name.lower()
    for fmt, exts in EXTENSIONS.items():
        if name.endswith(exts):
            return fmt
    raise SystemExit(f"cannot tell the format of {path.name}; pass --format csv|jsonl|parquet")


def _non_null_columns(path: Path, contract: Contract, columns: tuple[Column, ...]) -> set[str]:
    """Columns with no null in the sample: drafted as `nullable: false` for review."""
    fmt = contract.format
    if fmt.type != "csv":
        return set()
    con = duckdb.connect()
    try:
        nulls = ", ".join(f"count(*) - count({quote_ident(c.source)})" for c in columns)
        row = con.execute(
            f"SELECT {nulls} FROM read_csv(?, header=true, delim=?, quote=?, nullstr=?, "
            f"compression=?, ignore_errors=true, all_varchar=true)",
            [str(path), fmt.delimiter, fmt.quote, list(fmt.null_markers),
             _compression(path, contract)],
        ).fetchall()[0]
    except duckdb.Error:
        return set()
    finally:
        con.close()
    return {c.name for c, n in zip(columns, row) if n == 0}


def draft_contract(path: Path, dataset: str, *, file_format: str | None = None,
                   delimiter: str | None = None) -> dict:
    """Return a draft contract (a dict ready for YAML) inferred from a sample file.

    Raises ContractError for an invalid dataset name and CleanError for an unreadable file.
    """
    fmt_type = _format_for(path, file_format)
    fmt = FileFormat(type=fmt_type, delimiter=delimiter or ("\t" if path.name.lower()
                                                            .endswith((".tsv", ".tsv.gz"))
                                                            else ","))
    contract = parse_contract({"name": dataset, "format": {"type": fmt_type,
                                                           "delimiter": fmt.delimiter}})
    with tempfile.TemporaryDirectory() as tmp:
        columns = infer_columns(path, contract, Path(tmp))
    required = _non_null_columns(path, contract, columns)
    columns = tuple(
        Column(name=c.name, type=c.type, nullable=c.name not in required, source=c.source)
        for c in columns
    )
    draft = contract.with_columns(columns).to_dict()
    parse_contract(draft)  # the draft must itself be a valid contract
    return draft


def _cmd_draft(args) -> int:
    path = Path(args.file)
    from .images.draft import draft_image_contract, is_image_sample

    if path.exists() and is_image_sample(path):
        try:
            draft, notes = draft_image_contract(path, args.dataset)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return _write_draft(args, draft, [f"Draft image contract for {args.dataset}, from "
                                          f"{path.name}.", *notes,
                                          "Review: size, fit, split fractions and thresholds."])
    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2
    try:
        draft = draft_contract(path, args.dataset, file_format=args.format,
                               delimiter=args.delimiter)
    except (ContractError, CleanError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _write_draft(args, draft, [
        f"Draft contract for {args.dataset}, inferred from the sample file {path.name}.",
        "Review before committing: column types, nullable (false where the sample had no",
        "nulls), and add primary_key / partition_column where they apply."])


def _write_draft(args, draft: dict, notes: list[str]) -> int:
    out_dir = Path(args.out) if args.out else (
        Path("platform/datasets") if Path("platform/datasets").is_dir() else Path.cwd())
    target = out_dir / f"{args.dataset}.yaml"
    if target.exists() and not args.force:
        print(f"error: {target} exists; pass --force to overwrite", file=sys.stderr)
        return 1
    header = "".join(f"# {line}\n" for line in notes)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + yaml.safe_dump(draft, sort_keys=False, allow_unicode=True))
    print(f"wrote {target}")
    return 0


def _cmd_query(args) -> int:
    from .resources.catalog import DuckDBCatalog

    try:
        if args.as_of:
            from .tables.history import query_as_of

            rows = query_as_of(DuckDBCatalog(), args.sql, args.as_of)
        else:
            rows = DuckDBCatalog().query(args.sql)
    except (duckdb.Error, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for row in rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return 0


def _cmd_history(args) -> int:
    from .resources.catalog import DuckDBCatalog
    from .tables.history import history_lines

    try:
        for line in history_lines(DuckDBCatalog(), args.dataset, rejected=args.rejected):
            print(line)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_rollback(args) -> int:
    from .resources.catalog import DuckDBCatalog
    from .resources.storage import LocalStorage
    from .tables.history import rollback_dataset

    try:
        for line in rollback_dataset(DuckDBCatalog(), LocalStorage().lake(), args.dataset,
                                     args.to):
            print(line)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="data-platform", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    contract = sub.add_parser("contract", help="dataset contracts")
    csub = contract.add_subparsers(dest="action", required=True)
    draft = csub.add_parser("draft", help="write a draft contract from a sample file")
    draft.add_argument("file")
    draft.add_argument("--dataset", required=True)
    draft.add_argument("--format", choices=sorted(EXTENSIONS))
    draft.add_argument("--delimiter")
    draft.add_argument("--out", help="folder to write NAME.yaml into (default platform/datasets)")
    draft.add_argument("--force", action="store_true")
    draft.set_defaults(func=_cmd_draft)
    query = sub.add_parser("query", help="run SQL against the local catalog (read-only)")
    query.add_argument("sql")
    query.add_argument("--as-of", help="time travel: answer from the snapshots current at this "
                                       "time (ISO, local time zone unless given)")
    query.set_defaults(func=_cmd_query)
    history = sub.add_parser("history", help="list a dataset table's snapshots")
    history.add_argument("dataset")
    history.add_argument("--rejected", action="store_true", help="the rejected-rows table")
    history.set_defaults(func=_cmd_history)
    rollback = sub.add_parser("rollback", help="make an earlier (or later) snapshot current")
    rollback.add_argument("dataset")
    rollback.add_argument("--to", required=True, type=int, help="snapshot id (see history)")
    rollback.set_defaults(func=_cmd_rollback)
    from .operating.commands import add_parsers

    add_parsers(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
