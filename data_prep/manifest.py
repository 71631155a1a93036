"""A CSV list of files: ``path,speaker[,split][,sentence_id][,utt_id]``, with or without a header row.

Paths may be absolute or relative to the CSV's folder. A non-empty ``split`` (train / valid / test) is kept as
given; rows without one are split by the chosen rule. Without a header the columns are positional:
path, speaker, split. utt_id defaults to the path without its extension. ``source`` in the prepared manifest
is the path as written in the CSV.

A malformed CSV (missing column, unknown split, empty speaker) raises :class:`PrepError` with the line number;
a listed file that is missing or unreadable is reported and skipped when it is decoded.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .items import SPLITS, Item, PrepError, Scan

__all__ = ["scan"]


def scan(csv_path: str | os.PathLike) -> Scan:
    """Read the CSV file list at ``csv_path`` (see the module docstring)."""
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise PrepError(f"{csv_path}: no such file (--csv should list path,speaker[,split])")
    base = csv_path.parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PrepError(f"{csv_path}: cannot read the CSV ({e})") from e
    if not rows:
        raise PrepError(f"{csv_path}: empty CSV (expected path,speaker[,split])")
    header = [h.strip().lower() for h in rows[0]]
    if "path" in header:
        if "speaker" not in header:
            raise PrepError(
                f"{csv_path}: line 1: the header has no 'speaker' column (found {', '.join(header)})"
            )
        col = {
            name: header.index(name)
            for name in ("path", "speaker", "split", "sentence_id", "utt_id")
            if name in header
        }
        body, first_line = rows[1:], 2
    else:
        col = {"path": 0, "speaker": 1, "split": 2}
        body, first_line = rows, 1

    items: list[Item] = []
    for n, row in enumerate(body, start=first_line):
        if not row or all(not c.strip() for c in row):
            continue

        def get(name: str, row=row) -> str:
            j = col.get(name)
            return row[j].strip() if j is not None and j < len(row) else ""

        path, speaker, split = get("path"), get("speaker"), get("split").lower()
        if not path:
            raise PrepError(f"{csv_path}: line {n}: empty path")
        if not speaker:
            raise PrepError(f"{csv_path}: line {n}: empty speaker for {path}")
        if split and split not in SPLITS:
            raise PrepError(f"{csv_path}: line {n}: split {split!r} is not one of {', '.join(SPLITS)}")
        full = Path(path).expanduser()
        full = full if full.is_absolute() else base / full
        utt_id = get("utt_id") or os.path.splitext(path)[0]
        items.append(Item(os.fspath(full.resolve()), path, speaker, utt_id, get("sentence_id"), split))
    info = {"kind": "manifest", "root": os.fspath(base), "csv": os.fspath(csv_path)}
    return Scan(items=items, skipped=[], info=info)
