"""`cleaned/<dataset>` of an image dataset: each upload's manifest rows, staged and audited.

An upload is one image or one archive of images (one partition either way). Its manifest has a
row per image seen, invalid ones included with the reason (corrupt, truncated, fake, too many
pixels, unsafe archive member, bomb...), so nothing is dropped silently. The rows are staged as
Parquet with the table's field ids and lineage columns, audited like a table's files, and
committed by `table/<dataset>` like any other dataset's. A damaged archive (cut off, corrupt
directory, over the total caps) is unreadable as a whole: nothing of it is committed and the
partition fails with the reason, until a fixed archive is uploaded.
"""

from __future__ import annotations

import tarfile
import time
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import staging as st
from ..cleaning import StagedFile
from ..images.archives import ArchiveError, archive_kind
from ..images.manifest import load_labels_csv, manifest_rows
from ..records import feed_hasher
from ..tables.schema import SOURCE_KEY, SOURCE_VERSION, arrow_schema
from .audit import WARN, rejected_share
from .clean import Stager, raw_key


class ManifestResult:
    """What staging one upload's manifest produced (the fields the Stager reads)."""

    def __init__(self, files: list[StagedFile], rows: int, invalid: int, images_seen: int | None,
                 seconds: float):
        self.files, self.rejected_file = files, None
        self.rows_written, self.rows_rejected, self.invalid = rows, 0, invalid
        self.source_records, self.seconds = images_seen, seconds


def images_seen(path: Path, key: str) -> int | None:
    """How many images an upload holds, counted from the archive's own directory (not by the
    manifest code it checks): 1 for a single file; None when it cannot be counted."""
    kind = archive_kind(key)
    try:
        if kind is None:
            return 1
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                return sum(1 for i in zf.infolist() if not i.is_dir())
        with tarfile.open(path, "r:gz" if kind == "tar.gz" else "r:") as tf:
            return sum(1 for m in tf if not m.isdir())
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError):
        return None


class ImageStager(Stager):
    """Stages the manifests of one run's image uploads."""

    _labels: dict | None = None

    def _labels_map(self) -> dict | None:
        """The contract's labels CSV (read once per run), or None for folder labels."""
        name = self.contract.images.labels_csv
        if name is None:
            return None
        if self._labels is None:
            rk = raw_key(self.contract, name)
            with self.scratch.tempdir(prefix="labels-") as work:
                try:
                    with self.raw.pinned(rk, work / "labels.csv") as pin:
                        self._labels = load_labels_csv(pin.path)
                except FileNotFoundError:
                    raise ValueError(f"the labels file raw/{rk} named by the contract does "
                                     "not exist") from None
        return self._labels

    def _clean(self, key: str, rk: str, pinned, record: st.StagingRecord, work, pool):
        t0 = time.perf_counter()
        record.signature = pinned.info.signature
        algorithm = self._hash_algorithm()
        hasher = st.new_hasher(algorithm)
        feed_hasher(pinned.path, hasher)
        record.content_hash = f"{algorithm}:{hasher.hexdigest()}"
        if st.read_ledger(self.lake, self.contract.name, key) is not None \
                and self._unchanged(key, record.content_hash):
            record.status = st.UNCHANGED
            record.reason = "same content as the committed version"
            return None
        settings = self.contract.images
        data_table, _ = self._tables(self.contract)
        schema = arrow_schema(data_table.schema())
        try:
            labels = self._labels_map()
            rows = list(manifest_rows(
                pinned.path, key=key, dataset_prefix_label=settings.labels == "folder",
                labels=labels, split=dict(settings.split), max_pixels=settings.max_pixels))
        except (ArchiveError, ValueError) as e:
            record.reason = f"{type(e).__name__}: {e}"
            return None
        for row in rows:
            row[SOURCE_KEY], row[SOURCE_VERSION] = key, record.version
        out = work / "out"
        out.mkdir(parents=True, exist_ok=True)
        path = out / "manifest.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        invalid = sum(1 for r in rows if not r["valid"])
        result = ManifestResult([StagedFile(path, "", len(rows))], len(rows), invalid,
                                images_seen(pinned.path, key), time.perf_counter() - t0)
        result.eff, result.data_table, result.early = self.contract, data_table, {}
        return result

    def _audits(self, eff, data_table, result, record: st.StagingRecord) -> list:
        # The contract's rejected-share thresholds apply to the share of invalid images of an
        # archive; a single invalid image is committed as an invalid row, with a warning.
        audits = super()._audits(eff, data_table, result, record)
        share = rejected_share(eff, result.invalid, result.source_records)
        if result.source_records == 1 and not share.passed:
            share.severity = WARN
        share.reason = share.reason.replace("records rejected", "images invalid") \
            if share.reason else share.reason
        share.metadata = {"invalid_images": result.invalid, **share.metadata}
        return [share if a.name == "rejected_share" else a for a in audits]
