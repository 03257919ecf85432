"""Iceberg schemas from contracts, and schema evolution between a table and its contract.

Every dataset table has the contract's columns, then two lineage columns that every row carries:
`_source_key` (the raw object's key under raw/<dataset>/) and `_source_version` (the version
sequence of that object, see versions.py). They let a commit replace exactly the rows of a
re-processed file and refuse an older version over a newer one. The rejected table has the
rejected-row columns and the same two.

All columns are optional in Iceberg (files written by DuckDB are added as they are; not-null is
enforced by the cleaning engine and audited by checks). Evolution follows the contract: added
columns and widened decimals evolve the table; anything else is a breaking change that fails
with a message naming the columns and changes nothing.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IcebergType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from ..contracts import Column, Contract

SOURCE_KEY = "_source_key"
SOURCE_VERSION = "_source_version"
LINEAGE = ((SOURCE_KEY, "VARCHAR"), (SOURCE_VERSION, "BIGINT"))
REJECTED_COLUMNS = (("source_key", "string"), ("line", "int"), ("error_type", "string"),
                    ("column_name", "string"), ("reason", "string"), ("raw", "string"))

_SIMPLE: dict[str, IcebergType] = {
    "int": LongType(), "float": DoubleType(), "bool": BooleanType(), "string": StringType(),
    "date": DateType(), "timestamp": TimestamptzType(),
}


class SchemaChangeError(ValueError):
    """The contract changed the table's schema in a way Iceberg cannot evolve safely."""


def iceberg_type(contract_type: str) -> IcebergType:
    """Return the Iceberg type of a contract type (`int`, `decimal(12,2)`, ...)."""
    if contract_type.startswith("decimal"):
        p, s = contract_type[len("decimal("):-1].split(",")
        return DecimalType(int(p), int(s))
    return _SIMPLE[contract_type]


def contract_type(t: IcebergType) -> str:
    """The contract type of an Iceberg type (inverse of `iceberg_type`)."""
    if isinstance(t, DecimalType):
        return f"decimal({t.precision},{t.scale})"
    for name, it in _SIMPLE.items():
        if it == t:
            return name
    raise SchemaChangeError(f"the table has a column of type {t}, which no contract type maps to")


def table_columns(contract: Contract) -> list[tuple[str, str]]:
    """(name, contract type) of a dataset table's columns, lineage columns last."""
    return [(c.name, c.type) for c in contract.columns] + [(SOURCE_KEY, "string"),
                                                           (SOURCE_VERSION, "int")]


def rejected_columns() -> list[tuple[str, str]]:
    return list(REJECTED_COLUMNS) + [(SOURCE_KEY, "string"), (SOURCE_VERSION, "int")]


def new_schema(columns: list[tuple[str, str]]) -> Schema:
    """A fresh Iceberg schema with field ids 1..n in column order, every field optional."""
    return Schema(*[NestedField(i, name, iceberg_type(t), required=False)
                    for i, (name, t) in enumerate(columns, start=1)])


def partition_spec(schema: Schema, partition_column: str | None) -> PartitionSpec:
    if not partition_column:
        return PartitionSpec()
    field = schema.find_field(partition_column)
    return PartitionSpec(PartitionField(source_id=field.field_id, field_id=1000,
                                        transform=IdentityTransform(), name=partition_column))


def field_ids(schema: Schema) -> dict[str, int]:
    """Top-level column name -> Iceberg field id: the ids every staged Parquet file carries."""
    return {f.name: f.field_id for f in schema.fields}


def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema staged files must have (names, types and field ids), for audits."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return schema_to_pyarrow(schema, include_field_ids=True)


@dataclasses.dataclass
class Evolution:
    """What a contract changes in a table's schema: columns to add and decimals to widen."""

    add: list[tuple[str, str]]
    widen: list[tuple[str, str, str]]  # (column, from type, to type)

    def __bool__(self) -> bool:
        return bool(self.add or self.widen)

    def describe(self) -> str:
        parts = [f"add {n} {t}" for n, t in self.add]
        parts += [f"widen {n} {a} -> {b}" for n, a, b in self.widen]
        return ", ".join(parts) or "no change"


def plan_evolution(schema: Schema, wanted: list[tuple[str, str]], *, spec: PartitionSpec,
                   partition_column: str | None, table: str) -> Evolution:
    """Compare a table's schema with the columns its contract wants.

    Returns the Evolution to apply (possibly empty). Raises SchemaChangeError, naming every
    offending column, for removed or renamed columns, narrowed or changed types, and a changed
    partition column: those would silently change what existing rows mean.
    """
    have = {f.name: contract_type(f.field_type) for f in schema.fields}
    want = dict(wanted)
    problems = []
    removed = [n for n in have if n not in want]
    if removed:
        problems.append(f"columns removed or renamed: {removed} (Iceberg keeps them; restore "
                        "them in the contract, nullable if they are no longer sent)")
    add, widen = [], []
    for name, t in wanted:
        if name not in have:
            add.append((name, t))
        elif have[name] != t:
            if _widens(have[name], t):
                widen.append((name, have[name], t))
            else:
                problems.append(f"column {name}: type {have[name]} cannot change to {t}")
    current_pcols = [schema.find_field(f.source_id).name for f in spec.fields]
    wanted_pcols = [partition_column] if partition_column else []
    if current_pcols != wanted_pcols:
        problems.append(f"partition column changed from {current_pcols or None} to "
                        f"{wanted_pcols or None}")
    if problems:
        raise SchemaChangeError(f"table {table}: breaking schema change, nothing was changed: "
                                + "; ".join(problems))
    return Evolution(add=add, widen=widen)


def _widens(old: str, new: str) -> bool:
    """Iceberg's safe promotions among contract types: decimal precision up, same scale."""
    if old.startswith("decimal") and new.startswith("decimal"):
        (p1, s1), (p2, s2) = (tuple(int(x) for x in t[len("decimal("):-1].split(","))
                              for t in (old, new))
        return s1 == s2 and p2 >= p1
    return False


def contract_columns_from_schema(schema: Schema) -> tuple[Column, ...]:
    """The contract columns a table holds (lineage columns left out), all nullable."""
    return tuple(Column(name=f.name, type=contract_type(f.field_type))
                 for f in schema.fields if f.name not in (SOURCE_KEY, SOURCE_VERSION))
