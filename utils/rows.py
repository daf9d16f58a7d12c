"""A CSV table written one row at a time: each row is appended and flushed as soon as it is done, so that a run
stopped at any point (Ctrl-C, kill -9, a full disk) keeps every row it finished, and a later run reads them back to
go on where it stopped."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from .cli import UserError


def read_rows(path: Path, fields: list[str]) -> list[dict[str, str]]:
    """The finished rows of a table written by RowWriter with these fields; [] when there is none yet. A last line
    cut short (the writer was killed in the middle of it) is removed from the file; a file with other columns is a
    UserError."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        os.truncate(path, len(data))
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    if not lines:
        return []
    header = next(csv.reader(lines[:1]))
    if header != fields:
        raise UserError(f"{path} has the columns {', '.join(header)}, not those this script writes "
                        f"({', '.join(fields)}): choose another output folder")
    return list(csv.DictReader(lines))


class RowWriter:
    """Appends rows to a table (writing its header first when the file is new or empty), each flushed at once."""

    def __init__(self, path: Path, fields: list[str]):
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, fieldnames=fields)
        if self.file.tell() == 0:
            self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()
        os.fsync(self.file.fileno())

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()
