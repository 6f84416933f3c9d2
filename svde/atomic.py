"""Durable file writes: every file svde writes goes through here.

A file is written to a temporary name in its own folder, flushed and fsynced, then renamed over
the target (``os.replace`` is atomic on POSIX and Windows), and the folder is fsynced so the
rename itself survives a power cut. A crash therefore leaves either the old file or the new one,
never a torn one. Temporaries are named ``.<name>.<random>.tmp``; :func:`remove_stale_temporaries`
deletes those a killed process left behind.

File modes. The temporary comes from :func:`tempfile.mkstemp`, which creates it readable by its
owner only (0600); before the rename it is given the mode a plain ``open(path, "w")`` would give,
``0666 & ~umask`` (:func:`default_file_mode`: 0644 under the usual umask 022, 0664 under 002), so
that colleagues on a shared server can read checkpoints, predictions and caches as they can any
other file. A secret file asks for its own mode (``atomic_path(path, mode=0o600)``).

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

import glob
import json
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux reports it in ``/proc/self/status`` (``Umask:``, since Linux 4.7). Elsewhere the only way
    is to set it and set it back (``os.umask`` is process-wide), done under a lock so that two
    svde threads never interleave; a file another thread creates in that instant is created under umask 022.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``.

    Example:
        >>> old = os.umask(0o027); oct(default_file_mode()); _ = os.umask(old)
        '0o640'
    """
    return 0o666 & ~current_umask()


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
def atomic_path(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    For writers that want a file name (``torch.save``, ``onnx.save``, ``cv2.imwrite``). If the
    block raises, the temporary is removed and ``path`` is untouched. The file gets ``mode``
    (default: :func:`default_file_mode`, what a plain ``open`` gives; ``0o600`` for a secret).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = default_file_mode() if mode is None else mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    tmp_path = Path(tmp)
    try:
        _chmod(tmp_path, mode, fd)
    finally:
        os.close(fd)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        _chmod(tmp_path, mode)  # again: a writer may have replaced the temporary with a file of its own
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def _chmod(path: Path, mode: int, fd: int | None = None) -> None:
    """Give ``path`` (open as ``fd`` when given) ``mode``; a file system without modes (e.g. FAT, some
    network mounts) is left as it is."""
    try:
        if fd is not None and hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:
            os.chmod(path, mode)
    except OSError as exc:
        log.debug("cannot set the mode of %s to %o: %s", path, mode, exc)


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


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None,
                             older_than_s: float | None = None) -> list[Path]:
    """Delete temporaries (``.<name>.*.tmp``) that a killed writer left in ``folder``.

    Only call this for a folder that no other live process is writing to (e.g. a run folder at
    the start of the run), or pass ``older_than_s``: only temporaries not modified for that many
    seconds go. With ``name``, only that target's temporaries go.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{glob.escape(name)}.*{TMP_SUFFIX}" if name else f".*{TMP_SUFFIX}"
    removed = []
    now = time.time()
    for tmp in folder.glob(pattern):
        try:
            if not tmp.is_file() or (older_than_s is not None and now - tmp.stat().st_mtime <= older_than_s):
                continue
        except OSError:  # removed meanwhile
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed
