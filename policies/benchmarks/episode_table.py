"""``EpisodeTable``: a benchmark's per-episode rows, one Parquet file beside its ``results.json``.

Every record of a benchmark (one policy on one task, SRM, setting and seed) plays the same test images once
each; this table keeps one row per such episode: the record's key (:data:`RECORD_KEYS`),
the image (index into the split and id) and every column of
:data:`~policies.runs.evaluation.EPISODE_COLUMNS` (actions, labels, rewards, the IoU after 0..T prompts, the
final metrics). Paired statistics read it: two records with the same task, SRM and seed pair image by image.

Columnar, so ``pandas.read_parquet(path)`` or ``pyarrow.parquet.read_table(path)`` loads it for analysis.
The file is rewritten whole and atomically (:func:`alignsam_gym.atomic.replacing`) before ``results.json`` each
time records are added, so after a crash it holds every recorded episode, and perhaps rows of records
``results.json`` does not list yet; :meth:`EpisodeTable.read` keeps only the rows of the records it is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from alignsam_gym.atomic import replacing

#: the fields that name a benchmark record and its episodes' rows: one policy's evaluation in one setting
RECORD_KEYS = ("task", "policy", "srm", "label_source", "branch", "max_prompts", "seed")


def _schema() -> Any:
    import pyarrow as pa

    ints, floats = pa.list_(pa.int16()), pa.list_(pa.float32())
    return pa.schema([
        ("task", pa.string()), ("policy", pa.string()), ("srm", pa.string()), ("label_source", pa.string()),
        ("branch", pa.string()), ("max_prompts", pa.int32()), ("seed", pa.int64()),
        ("image_index", pa.int32()), ("image_id", pa.string()), ("actions", ints), ("labels", pa.list_(pa.int8())),
        ("rewards", floats), ("is_foreground", pa.list_(pa.bool_())), ("iou", floats),
        ("foreground_rate", pa.float64()), ("return", pa.float64()), ("auc", pa.float64()), ("noc85", pa.int32()),
        ("noc90", pa.int32()), ("final_iou", pa.float64()), ("f_beta", pa.float64()), ("f_adaptive", pa.float64()),
        ("e_measure", pa.float64()), ("mae", pa.float64()), ("ber", pa.float64()),
    ])


def row_key(row: dict[str, Any]) -> tuple:
    """The key of the record a row (or a record) belongs to."""
    return tuple(row[k] for k in RECORD_KEYS)


class EpisodeTable:
    """The per-episode rows of one benchmark output (``<out>/<report name>_episodes.parquet``).

    :param path: the Parquet file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self, records: Iterable[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The stored rows (none when the file does not exist); with ``records``, only theirs.

        :raises ValueError: when the file is unreadable, naming it.
        """
        if not self.path.is_file():
            return []
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(self.path).to_pylist()
        except Exception as err:  # pyarrow raises its own error types for every kind of bad file
            raise ValueError(f"{self.path}: unreadable per-episode table ({err}); move it away to start over"
                             ) from err
        if records is None:
            return rows
        wanted = {row_key(r) for r in records}
        return [row for row in rows if row_key(row) in wanted]

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file with ``rows`` (each a record key plus the episode columns), atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = _schema()
        table = pa.Table.from_pylist([{name: row[name] for name in schema.names} for row in rows], schema=schema)
        with replacing(self.path, suffix=".parquet.tmp") as tmp:
            pq.write_table(table, tmp, compression="zstd")

    @staticmethod
    def rows_of(record: dict[str, Any], episodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of ``record``'s ``episodes`` (``evaluate(...)["episodes"]``): each with the record's key."""
        key = {k: record[k] for k in RECORD_KEYS}
        return [{**key, **episode} for episode in episodes]
