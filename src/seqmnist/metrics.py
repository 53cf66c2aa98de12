"""metrics.jsonl, a run's training records: one JSON object per line, in step order.

The one reader of the file: plots, resuming and anything else that looks back
at a run's records go through ``read_records``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def read_records(path: Path) -> list[Record]:
    """The records in ``path``, up to the first line that is not one (an interrupted write)."""
    records = []
    for line in Path(path).read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not (
            isinstance(record, dict) and isinstance(record.get("step"), int) and "kind" in record
        ):
            break
        records.append(record)
    return records


def encode_record(record: Record) -> str:
    """One line of the file."""
    return json.dumps(record) + "\n"
