"""Durable file writes: every file svde writes goes through here.

A file is written to a temporary name in its own folder, flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows), and the folder is fsynced so the
rename itself survives a power cut. A crash therefore leaves either the old file or the new one,
never a torn one. Temporaries are named ``.<name>.<random>.tmp``; :func:`remove_stale_temporaries`
deletes those a killed process left behind.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_text(folder / "a.txt", "hello\\n")
    >>> (folder / "a.txt").read_text()
    'hello\\n'
    >>> with atomic_path(folder / "b.bin") as tmp:
    ...     _ = tmp.write_bytes(b"\\x00")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.bin']
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file's data to disk (for files written by other libraries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    For writers that want a file name (``torch.save``, ``onnx.save``, ``cv2.imwrite``). If the
    block raises, the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove it is writable (a probe file is created and removed);
    an ``OSError`` otherwise. Called before any work, so that nothing is computed that cannot be saved.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".svde-write-check.", suffix=TMP_SUFFIX, dir=folder)
    os.close(fd)
    os.unlink(probe)
    return folder


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON atomically; non-finite floats are refused (they are not JSON)."""
    return write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines log, tolerating a torn last line (a process killed mid-append).

    A line that does not parse is an error unless it is the last one, which is dropped with a
    warning. A missing file reads as empty.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                log.warning("%s: dropping a torn last line (%d characters)", path, len(line))
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line ({exc.msg})") from None
    return records


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete temporaries (``.<name>.*.tmp``) that a killed writer left in ``folder``.

    Only call this for a folder that no other live process is writing to (e.g. a run folder at
    the start of the run). With ``name``, only that target's temporaries go.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{TMP_SUFFIX}" if name else f".*{TMP_SUFFIX}"
    removed = []
    for tmp in folder.glob(pattern):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed
