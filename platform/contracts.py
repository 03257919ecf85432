"""Dataset contracts: one YAML file per dataset, parsed into typed, validated objects.

A contract names the dataset, its kind, how its raw files are read (format options), and
optionally its columns (type, nullability, source header), primary key and partition column.
Everything here is pure: no Dagster, no storage.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import unicodedata
import zoneinfo
from pathlib import Path
from typing import Any

import yaml

from .contract_checks import CheckSettings, checks_to_dict, parse_checks
from .images.settings import (
    ARCHIVE_EXTENSIONS,
    IMAGE_EXTENSIONS,
    MANIFEST_COLUMNS,
    ImageSettings,
    parse_image_settings,
)

# The shipped contracts, in the source folder itself: resolved, so that an editable install's
# link tree (which keeps a dangling link to a deleted file and misses an added one until the
# next install) is never read.
CONTRACTS_DIR = Path(__file__).resolve().parent / "datasets"
CONTRACTS_DIR_VAR = "PLATFORM_CONTRACTS_DIR"

DEFAULT_NULL_MARKERS = ("", "NA", "N/A", "NULL", "null", "NaN")
FORMATS = ("csv", "jsonl", "parquet")
KINDS = ("table", "images")
# Extensions accepted per format, compressed variants included.
EXTENSIONS = {
    "csv": (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz"),
    "jsonl": (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz"),
    "parquet": (".parquet", ".pq"),
    "images": IMAGE_EXTENSIONS + ARCHIVE_EXTENSIONS,
}
_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DECIMAL = re.compile(r"^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
SIMPLE_TYPES = {
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}
# DuckDB type (as DESCRIBE prints it) -> contract type, for schema inference.
_FROM_DUCKDB = {
    "BIGINT": "int", "INTEGER": "int", "SMALLINT": "int", "TINYINT": "int", "HUGEINT": "int",
    "UBIGINT": "int", "UINTEGER": "int", "USMALLINT": "int", "UTINYINT": "int",
    "DOUBLE": "float", "FLOAT": "float", "BOOLEAN": "bool", "VARCHAR": "string",
    "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp",
    "TIMESTAMP_NS": "timestamp", "TIMESTAMP_MS": "timestamp", "TIMESTAMP_S": "timestamp",
    "TIME": "string", "UUID": "string", "BLOB": "string",
}


class ContractError(ValueError):
    """A contract file is invalid; the message names the file and the field."""


def normalize_name(name: str) -> str:
    """Return `name` as snake_case ASCII: `"Culmen Length (mm)"` -> `culmen_length_mm`.

    CamelCase is split (`orderId` -> `order_id`), accents are folded, anything that is not a
    letter or digit becomes one underscore, and a leading digit gets a `c_` prefix so the result
    is a valid SQL identifier. An empty result becomes `column`.
    """
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not text:
        text = "column"
    if text[0].isdigit():
        text = f"c_{text}"
    return text


def normalize_names(names: list[str]) -> list[str]:
    """Normalize a header, making duplicates unique with `_2`, `_3`... suffixes."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = normalize_name(name)
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def duckdb_type(contract_type: str) -> str:
    """Return the DuckDB SQL type for a contract type; raises ContractError if unknown."""
    if contract_type in SIMPLE_TYPES:
        return SIMPLE_TYPES[contract_type]
    m = _DECIMAL.match(contract_type)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        if not (1 <= precision <= 38 and 0 <= scale <= precision):
            raise ContractError(f"decimal precision/scale out of range: {contract_type}")
        return f"DECIMAL({precision},{scale})"
    raise ContractError(
        f"unknown column type {contract_type!r}; expected one of "
        f"{sorted(SIMPLE_TYPES)} or decimal(p,s)"
    )


def contract_type_from_duckdb(duck: str) -> str:
    """Map a DuckDB type name to the nearest contract type (used by schema inference)."""
    duck = duck.upper()
    if duck.startswith("DECIMAL"):
        return duck.lower().replace(" ", "")
    return _FROM_DUCKDB.get(duck, "string")


@dataclasses.dataclass(frozen=True)
class Column:
    """One typed column of a contract."""

    name: str
    type: str
    nullable: bool = True
    source: str | None = None  # header name in the raw file when it differs from `name`
    description: str | None = None

    @property
    def sql_type(self) -> str:
        return duckdb_type(self.type)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.source and self.source != self.name:
            d["source"] = self.source
        if self.description:
            d["description"] = self.description
        return d


@dataclasses.dataclass(frozen=True)
class FileFormat:
    """How raw files of a dataset are read."""

    type: str = "csv"
    delimiter: str = ","
    quote: str = '"'
    escape: str = '"'
    header: bool = True
    encoding: str = "utf-8"
    compression: str = "auto"  # auto (by extension) | none | gzip
    null_markers: tuple[str, ...] = DEFAULT_NULL_MARKERS
    timezone: str = "UTC"  # zone for timestamps written without an offset
    max_line_bytes: int = 16 * 1024 * 1024

    def accepts(self, key: str) -> bool:
        return key.lower().endswith(EXTENSIONS[self.type])


@dataclasses.dataclass(frozen=True)
class Contract:
    """A dataset contract; `columns` is empty when the schema is inferred from the first file."""

    name: str
    kind: str = "table"
    description: str = ""
    format: FileFormat = dataclasses.field(default_factory=FileFormat)
    columns: tuple[Column, ...] = ()
    primary_key: tuple[str, ...] = ()
    partition_column: str | None = None
    checks: CheckSettings = dataclasses.field(default_factory=CheckSettings)
    source_path: str | None = None
    images: ImageSettings | None = None  # kind images only

    @property
    def rejected_share_warn(self) -> float:
        return self.checks.rejected_share_warn

    @property
    def rejected_share_error(self) -> float:
        return self.checks.rejected_share_error

    @property
    def inferred(self) -> bool:
        return not self.columns

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def with_columns(self, columns: tuple[Column, ...]) -> Contract:
        return dataclasses.replace(self, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        fmt = self.format
        fmt_d: dict[str, Any] = {"type": fmt.type}
        if fmt.type == "csv":
            fmt_d.update(
                delimiter=fmt.delimiter, quote=fmt.quote, escape=fmt.escape, header=fmt.header,
            )
        fmt_d["encoding"] = fmt.encoding
        fmt_d["compression"] = fmt.compression
        if fmt.max_line_bytes != FileFormat.max_line_bytes:
            fmt_d["max_line_bytes"] = fmt.max_line_bytes
        if tuple(fmt.null_markers) != DEFAULT_NULL_MARKERS:
            fmt_d["null_markers"] = list(fmt.null_markers)
        if fmt.timezone != "UTC":
            fmt_d["timezone"] = fmt.timezone
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.description:
            d["description"] = self.description
        d["format"] = fmt_d
        if self.columns:
            d["columns"] = [c.to_dict() for c in self.columns]
        if self.primary_key:
            d["primary_key"] = list(self.primary_key)
        if self.partition_column:
            d["partition_column"] = self.partition_column
        d["checks"] = checks_to_dict(self.checks)
        if self.images is not None:
            d["images"] = self.images.to_dict()
            d.pop("format")
            d.pop("columns")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _err(where: str, msg: str) -> ContractError:
    return ContractError(f"{where}: {msg}")


def parse_contract(data: Any, where: str = "<contract>") -> Contract:
    """Validate a mapping (parsed YAML) and return a Contract; raises ContractError."""
    if not isinstance(data, dict):
        raise _err(where, "a contract must be a mapping")
    known = {"name", "kind", "description", "format", "columns", "primary_key",
             "partition_column", "checks", "images"}
    unknown = set(data) - known
    if unknown:
        raise _err(where, f"unknown keys {sorted(unknown)}")
    name = data.get("name")
    if not isinstance(name, str) or not _DATASET_NAME.match(name):
        raise _err(where, f"name {name!r} must match {_DATASET_NAME.pattern}")
    kind = data.get("kind", "table")
    if kind not in KINDS:
        raise _err(where, f"kind {kind!r} must be one of {KINDS}")
    if kind == "images":
        return _image_contract(data, name, where)
    if "images" in data:
        raise _err(where, "images settings are for kind images")

    fmt_raw = data.get("format") or {}
    if not isinstance(fmt_raw, dict):
        raise _err(where, "format must be a mapping")
    fmt_known = {f.name for f in dataclasses.fields(FileFormat)}
    if set(fmt_raw) - fmt_known:
        raise _err(where, f"unknown format keys {sorted(set(fmt_raw) - fmt_known)}")
    fmt_kwargs = dict(fmt_raw)
    if "null_markers" in fmt_kwargs:
        markers = fmt_kwargs["null_markers"]
        if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
            raise _err(where, "format.null_markers must be a list of strings")
        fmt_kwargs["null_markers"] = tuple(markers)
    for opt, want in (("header", bool), ("max_line_bytes", int)):
        if opt in fmt_kwargs and type(fmt_kwargs[opt]) is not want:
            raise _err(where, f"format.{opt} must be a {want.__name__}, "
                              f"not {fmt_kwargs[opt]!r}")
    for opt in ("type", "delimiter", "quote", "escape", "encoding", "compression", "timezone"):
        if opt in fmt_kwargs and not isinstance(fmt_kwargs[opt], str):
            raise _err(where, f"format.{opt} must be a string, not {fmt_kwargs[opt]!r}")
    fmt = FileFormat(**fmt_kwargs)
    try:
        zoneinfo.ZoneInfo(fmt.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _err(where, f"format.timezone {fmt.timezone!r} is not a known time zone") from None
    if fmt.type not in FORMATS:
        raise _err(where, f"format.type {fmt.type!r} must be one of {FORMATS}")
    if fmt.compression not in ("auto", "none", "gzip"):
        raise _err(where, "format.compression must be auto, none or gzip")
    for opt in ("delimiter", "quote", "escape"):
        if len(getattr(fmt, opt)) != 1:
            raise _err(where, f"format.{opt} must be a single character")

    columns: list[Column] = []
    for i, raw_col in enumerate(data.get("columns") or []):
        if not isinstance(raw_col, dict) or "name" not in raw_col or "type" not in raw_col:
            raise _err(where, f"columns[{i}] needs at least name and type")
        extra = set(raw_col) - {"name", "type", "nullable", "source", "description"}
        if extra:
            raise _err(where, f"columns[{i}] has unknown keys {sorted(extra)}")
        col_name = str(raw_col["name"])
        if not isinstance(raw_col.get("nullable", True), bool):
            raise _err(where, f"column {col_name}: nullable must be true or false, "
                              f"not {raw_col['nullable']!r}")
        if normalize_name(col_name) != col_name:
            raise _err(where, f"column {col_name!r} is not snake_case; use "
                              f"{normalize_name(col_name)!r} with source: {col_name!r}")
        try:
            duckdb_type(str(raw_col["type"]))
        except ContractError as e:
            raise _err(where, f"column {col_name}: {e}") from None
        columns.append(Column(
            name=col_name, type=str(raw_col["type"]), nullable=bool(raw_col.get("nullable", True)),
            source=raw_col.get("source"), description=raw_col.get("description"),
        ))
    names = [c.name for c in columns]
    if len(set(names)) != len(names):
        raise _err(where, "duplicate column names")

    pk = data.get("primary_key") or []
    if isinstance(pk, str):
        pk = [pk]
    pcol = data.get("partition_column")
    if columns:
        for k in pk:
            if k not in names:
                raise _err(where, f"primary_key column {k!r} is not a declared column")
        if pcol is not None and pcol not in names:
            raise _err(where, f"partition_column {pcol!r} is not a declared column")
        if pcol is not None and next(c for c in columns if c.name == pcol).nullable:
            raise _err(where, f"partition_column {pcol!r} must be declared nullable: false")
    elif pk or pcol:
        raise _err(where, "primary_key and partition_column need declared columns")

    return Contract(
        name=name, kind=kind, description=str(data.get("description", "")), format=fmt,
        columns=tuple(columns), primary_key=tuple(pk), partition_column=pcol,
        checks=_checks(data, where, names), source_path=where,
    )


def _checks(data: dict, where: str, columns: list[str] | None) -> CheckSettings:
    try:
        return parse_checks(data.get("checks"), columns)
    except ValueError as e:
        raise _err(where, str(e)) from None


def _image_contract(data: dict, name: str, where: str) -> Contract:
    """An image dataset: its columns are the manifest's; `checks` thresholds apply to the
    share of invalid images."""
    for key in ("format", "columns", "primary_key", "partition_column"):
        if key in data:
            raise _err(where, f"{key} is not set for kind images (the manifest's columns are "
                              "fixed; see the images section)")
    try:
        images = parse_image_settings(data.get("images"))
    except ValueError as e:
        raise _err(where, str(e)) from None
    return Contract(
        name=name, kind="images", description=str(data.get("description", "")),
        format=FileFormat(type="images", compression="none"),
        columns=tuple(Column(n, t, nullable) for n, t, nullable in MANIFEST_COLUMNS),
        checks=_checks(data, where, None), source_path=where, images=images)


def load_contract(path: Path) -> Contract:
    """Parse one contract YAML file; raises ContractError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ContractError(f"{path.name}: invalid YAML: {e}") from None
    contract = parse_contract(data, where=path.name)
    if contract.name != path.stem:
        raise ContractError(f"{path.name}: name {contract.name!r} must equal the file name")
    return contract


def contracts_dir() -> Path:
    """Where the contracts are: PLATFORM_CONTRACTS_DIR if set, else the shipped folder."""
    return Path(os.environ.get(CONTRACTS_DIR_VAR) or CONTRACTS_DIR)


def load_contracts(directory: Path | None = None) -> dict[str, Contract]:
    """Load every `*.yaml` contract in `directory` (default `contracts_dir()`), keyed by dataset
    name; read afresh on every call, so a restart or a reload of the definitions sees added,
    edited and deleted contracts without reinstalling anything."""
    directory = contracts_dir() if directory is None else Path(directory)
    if not directory.is_dir():
        raise ContractError(f"no contracts folder at {directory} (set {CONTRACTS_DIR_VAR} to "
                            "the folder holding your <dataset>.yaml files)")
    return {c.name: c for c in (load_contract(p) for p in sorted(directory.glob("*.yaml")))}
