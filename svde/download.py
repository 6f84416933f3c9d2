"""Opt-in downloads of weights files: bounded, time-limited, verified before they enter a cache, atomic.

:func:`download_verified` is the one download routine of svde (the released depth models of
:mod:`svde.models.released`, torchvision's RAFT and MobileNetV2 weights of
:mod:`svde.data.stereo.raft` and :mod:`svde.models.pretrained`). The file is streamed to a
temporary name beside its destination with a progress bar; the caller's ``verify`` sees the
temporary file (and its sha256) and may refuse it by raising, in which case nothing is kept; only
a verified file is renamed into place (:func:`svde.atomic.atomic_path`). Every download is bounded:

* in size: at most ``max_bytes`` (the caller's limit for that file, default
  :data:`DEFAULT_MAX_BYTES`); a response that announces or sends more is stopped at once;
* in time: a host that does not answer fails within :data:`ANSWER_TIMEOUT_S` seconds (or
  ``SVDE_DOWNLOAD_STALL_S``, if shorter; a refused connection at once); a transfer that stalls, fewer than :data:`STALL_MIN_BYTES` bytes in
  ``SVDE_DOWNLOAD_STALL_S`` seconds (default :data:`DEFAULT_STALL_S`; no byte at all, or a
  trickle), is stopped; and the whole download may take at most ``SVDE_DOWNLOAD_TIMEOUT_S``
  seconds (default :data:`DEFAULT_TOTAL_S`).

Every failure is one line built by the caller's ``unavailable(reason)``, and leaves no file
behind: the temporary is removed whatever happens in the process. A temporary that a killed
process left (``.<name>.<random>.tmp``) is removed by the next download of the same file once
no live download holds it (Linux/macOS: a download locks its temporary, ``fcntl.flock``, and one
younger than :data:`STALE_GRACE_S` is left alone; elsewhere: not modified for
``SVDE_DOWNLOAD_STALL_S`` + 60 s); other files are never touched. ``file://`` URLs (a local
mirror folder) work like ``http(s)://`` ones.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.bin").write_bytes(b"abc")
    >>> download_verified((folder / "a.bin").as_uri(), folder / "cache" / "a.bin",
    ...                   verify=lambda path, sha256: sha256[:8], unavailable=RuntimeError, progress=False)
    'ba7816bf'
    >>> download_verified((folder / "gone.bin").as_uri(), folder / "cache" / "gone.bin",
    ...                   verify=lambda path, sha256: None, unavailable=RuntimeError)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    RuntimeError: ...No such file or directory...
    >>> download_verified((folder / "a.bin").as_uri(), folder / "cache" / "b.bin", max_bytes=2,
    ...                   verify=lambda path, sha256: None, unavailable=RuntimeError)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    RuntimeError: the server announces 3 bytes, more than the 2 bytes this file can be; not downloaded
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

from svde.atomic import TMP_SUFFIX, atomic_path, remove_stale_temporaries
from svde.errors import UserError

log = logging.getLogger(__name__)

# Seconds to connect and get the server's answer (its status line and headers).
ANSWER_TIMEOUT_S = 10.0
DOWNLOAD_TIMEOUT_S = ANSWER_TIMEOUT_S  # its earlier name, kept for callers that import it
STALL_VARIABLE = "SVDE_DOWNLOAD_STALL_S"
DEFAULT_STALL_S = 60.0
STALL_MIN_BYTES = 1024  # fewer bytes than this in SVDE_DOWNLOAD_STALL_S seconds: a stalled transfer
TOTAL_VARIABLE = "SVDE_DOWNLOAD_TIMEOUT_S"
DEFAULT_TOTAL_S = 3600.0  # 1 h: the largest released file (b5_lrn4, 224 MiB) at 64 KiB/s
DEFAULT_MAX_BYTES = 1 << 30  # for a caller that names no limit of its own
STALE_GRACE_S = 5.0  # a temporary younger than this may belong to a download that is just starting
CHUNK = 1 << 20

T = TypeVar("T")


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _seconds(variable: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``variable`` (``default`` when unset)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{variable}={text!r}: expected a number of seconds > 0 (default {default:g})")
    return value


def stall_seconds() -> float:
    """``SVDE_DOWNLOAD_STALL_S``: how long a download may go without progress (default :data:`DEFAULT_STALL_S`)."""
    return _seconds(STALL_VARIABLE, DEFAULT_STALL_S)


def total_seconds() -> float:
    """``SVDE_DOWNLOAD_TIMEOUT_S``: how long one download may take in all (default :data:`DEFAULT_TOTAL_S`)."""
    return _seconds(TOTAL_VARIABLE, DEFAULT_TOTAL_S)


try:  # advisory locks mark a temporary as in use (POSIX); elsewhere staleness is judged by age only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def _lock(path: Path) -> int | None:
    """Open ``path`` and hold an exclusive advisory lock on it (None where locks do not exist)."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _in_use(path: Path) -> bool:
    """Whether a live download holds ``path`` (its lock cannot be taken)."""
    try:
        fd = _lock(path)
    except OSError:
        return True
    if fd is not None:
        os.close(fd)
    return False


def remove_stale_downloads(dest: Path, stall_s: float) -> list[Path]:
    """Remove the temporaries of ``dest`` (``.<name>.*.tmp`` beside it) that no live download holds.

    A temporary is left alone while it is younger than :data:`STALE_GRACE_S` or locked by its
    download; without locks (Windows), while it was modified within the last ``stall_s`` + 60 s
    (a live download writes at least every ``stall_s`` seconds). Returns the removed paths.
    """
    folder = dest.parent
    if fcntl is None:
        return remove_stale_temporaries(folder, dest.name, older_than_s=stall_s + 60.0)
    removed = []
    for tmp in _stale_candidates(folder, dest.name):
        if not _in_use(tmp):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        log.info("removed %d temporary file(s) of an interrupted download of %s", len(removed), dest)
    return removed


def _stale_candidates(folder: Path, name: str) -> list[Path]:
    """The temporaries of ``name`` in ``folder`` old enough to be judged (see :func:`remove_stale_downloads`)."""
    if not folder.is_dir():
        return []
    now = time.time()
    found = []
    for tmp in folder.iterdir():
        if not (tmp.name.startswith(f".{name}.") and tmp.name.endswith(TMP_SUFFIX)):
            continue
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > STALE_GRACE_S:
                found.append(tmp)
        except OSError:  # removed meanwhile
            continue
    return found


def _read_timeout(response: Any, seconds: float) -> None:
    """Give the response's socket a per-read timeout of ``seconds`` (best effort: http.client's layout)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(seconds)


def _size(value: int) -> str:
    return f"{value / (1 << 20):.1f} MiB" if value >= (1 << 20) else f"{value} bytes"


class _Stopped(Exception):
    """A download stopped by one of its limits, or broken; the message is the reason."""


def _stream(response: Any, tmp: Path, label: str, limit: int, stall_s: float, total_s: float, start: float,
            progress: bool) -> tuple[int, str]:
    """Copy ``response`` into ``tmp`` within the limits (see the module); ``(bytes received, sha256)``."""
    from tqdm.auto import tqdm

    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    if total is not None and total > limit:
        raise _Stopped(f"the server announces {_size(total)}, more than the {_size(limit)} this file can be; "
                       "not downloaded")
    _read_timeout(response, min(stall_s, total_s))
    read = getattr(response, "read1", response.read)  # read1: whatever has arrived, not a full chunk
    digest, received = hashlib.sha256(), 0
    window_start, window_bytes = time.monotonic(), 0
    try:
        with open(tmp, "wb", buffering=0) as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                                     desc=label, disable=not progress) as bar:
            while True:
                chunk = read(CHUNK)
                now = time.monotonic()
                if chunk:
                    received += len(chunk)
                    if received > limit:
                        raise _Stopped(f"more than {_size(limit)} received, more than this file can be (an endless "
                                       "or wrong response); stopped and nothing kept")
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                    window_bytes += len(chunk)
                if now - start > total_s:
                    raise _Stopped(f"the download took more than {TOTAL_VARIABLE}={total_s:g} s ({_size(received)} "
                                   "received); stopped and nothing kept")
                if window_bytes >= STALL_MIN_BYTES:
                    window_start, window_bytes = now, 0
                elif now - window_start > stall_s:
                    raise _Stopped(f"the download stalled: {window_bytes} bytes in the last "
                                   f"{now - window_start:.0f} s, {_size(received)} in all (fewer than {STALL_MIN_BYTES} bytes in {STALL_VARIABLE}="
                                   f"{stall_s:g} s); stopped and nothing kept")
                if not chunk:
                    break
    except (socket.timeout, TimeoutError):
        raise _Stopped(f"the download stalled: no data for {min(stall_s, total_s):g} s after {_size(received)} "
                       f"({STALL_VARIABLE}={stall_s:g}); stopped and nothing kept") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Stopped(f"download interrupted after {received} bytes: {type(exc).__name__}: {exc}") from None
    if total is not None and received != total:
        raise _Stopped(f"download ended after {received} of {total} bytes")
    return received, digest.hexdigest()


def download_verified(url: str, dest: Path, verify: Callable[[Path, str], T],
                      unavailable: Callable[[str], Exception], progress: bool = True,
                      timeout: float | None = None, max_bytes: int | None = None) -> T:
    """Download ``url`` to ``dest`` if ``verify(temporary_path, sha256)`` accepts it; returns its result.

    ``unavailable(reason)`` builds the (one-line) error raised when the file cannot be fetched:
    no answer within ``timeout`` seconds (default :data:`ANSWER_TIMEOUT_S`), more than
    ``max_bytes`` bytes (default :data:`DEFAULT_MAX_BYTES`), a stalled transfer
    (``SVDE_DOWNLOAD_STALL_S``) or one longer than ``SVDE_DOWNLOAD_TIMEOUT_S`` (see the module).
    An exception from ``verify`` propagates and leaves ``dest`` untouched. Temporaries of
    ``dest`` that an interrupted download left are removed first.
    """
    dest = Path(dest)
    stall_s, total_s = stall_seconds(), total_seconds()
    limit = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    start = time.monotonic()
    remove_stale_downloads(dest, stall_s)
    log.info("downloading %s to %s", url, dest)
    request = urllib.request.Request(url, headers={"User-Agent": "svde"})
    answer_s = min(ANSWER_TIMEOUT_S if timeout is None else timeout, stall_s, total_s)
    try:
        response = urllib.request.urlopen(request, timeout=answer_s)
    except urllib.error.HTTPError as exc:
        raise unavailable(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            reason = f"no answer within {answer_s:g} s"
        raise unavailable(str(reason)) from None
    except (socket.timeout, TimeoutError):
        raise unavailable(f"no answer within {answer_s:g} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise unavailable(f"{type(exc).__name__}: {exc}") from None
    lock_fd = None
    try:
        with response, atomic_path(dest) as tmp:
            try:
                lock_fd = _lock(tmp)
            except OSError:  # a file system without locks: other downloads then leave it alone
                lock_fd = None
            try:
                received, sha256 = _stream(response, tmp, dest.name, limit, stall_s, total_s, start, progress)
            except _Stopped as exc:
                raise unavailable(str(exc)) from None
            result = verify(tmp, sha256)
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    log.info("saved %s (%d bytes)", dest, received)
    return result
