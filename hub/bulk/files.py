"""Job folders and the NDJSON writer that splits a type's output past ``BULK_FILE_MAX_BYTES``.

Each job has a folder of its own under ``BULK_DIR`` (``<instance>/bulk`` by default), named
by the job's id; a file's name is ``<Type>-<n>.ndjson``. Lines are written as they are read
(never a file built in memory) and the folder is removed with the job.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from hub.config import instance_path
from hub.config import setting

_NAME = re.compile(r"^[A-Za-z]+-[0-9]+\.(ndjson|json)$")
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.match(text))


def bulk_dir(config: dict[str, Any]) -> Path:
    configured = setting(config, "BULK_DIR")
    if configured:
        return Path(configured)
    return Path(config.get("INSTANCE_PATH") or instance_path()) / "bulk"


def job_dir(config: dict[str, Any], job_id: str) -> Path:
    if not _JOB_ID.match(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return bulk_dir(config) / job_id


def file_path(config: dict[str, Any], job_id: str, name: str) -> Path | None:
    """The path of a job's file, or ``None`` for a name that is not one (no ``..`` tricks)."""
    if not _JOB_ID.match(job_id) or not _NAME.match(name):
        return None
    return bulk_dir(config) / job_id / name


def remove_job_dir(config: dict[str, Any], job_id: str) -> None:
    if _JOB_ID.match(job_id):
        shutil.rmtree(bulk_dir(config) / job_id, ignore_errors=True)


class NdjsonFiles:
    """The files of one type in a job folder: one line per resource, a new file past
    ``max_bytes``. :meth:`close` returns ``[(name, count)]`` of the files written."""

    def __init__(self, folder: Path, res_type: str, max_bytes: int):
        self.folder = folder
        self.res_type = res_type
        self.max_bytes = max(1, max_bytes)
        self.files: list[tuple[str, int]] = []
        self._fh = None
        self._size = 0
        self._count = 0

    def write(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        if self._fh is not None and self._size + len(data) + 1 > self.max_bytes and self._count:
            self._close_file()
        if self._fh is None:
            name = f"{self.res_type}-{len(self.files) + 1}.ndjson"
            self._fh = open(self.folder / name, "wb")  # noqa: SIM115 - closed by _close_file
            self._name, self._size, self._count = name, 0, 0
        self._fh.write(data)
        self._fh.write(b"\n")
        self._size += len(data) + 1
        self._count += 1

    def _close_file(self) -> None:
        self._fh.close()
        self.files.append((self._name, self._count))
        self._fh = None

    def close(self) -> list[tuple[str, int]]:
        if self._fh is not None:
            self._close_file()
        return self.files

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
