"""Opt-in downloads of weights files: time-limited, verified before they enter a cache, atomic.

:func:`download_verified` is the one download routine of svde (the released depth models of
:mod:`svde.models.released`, torchvision's RAFT weights of :mod:`svde.data.stereo.raft`). The
file is streamed to a temporary name beside its destination with a progress bar; the caller's
``verify`` sees the temporary file (and its sha256) and may refuse it by raising, in which case
nothing is kept; only a verified file is renamed into place (:func:`svde.atomic.atomic_path`).
A host that does not answer fails within :data:`DOWNLOAD_TIMEOUT_S` seconds (a refused
connection at once); every failure is one line built by the caller's ``unavailable(reason)``.
``file://`` URLs (a local mirror folder) work like ``http(s)://`` ones.

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
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from svde.atomic import atomic_path

log = logging.getLogger(__name__)

# Connect and read timeout of a download, seconds (a refused connection fails at once).
DOWNLOAD_TIMEOUT_S = 10.0
CHUNK = 1 << 20

T = TypeVar("T")


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_verified(url: str, dest: Path, verify: Callable[[Path, str], T],
                      unavailable: Callable[[str], Exception], progress: bool = True,
                      timeout: float | None = None) -> T:
    """Download ``url`` to ``dest`` if ``verify(temporary_path, sha256)`` accepts it; returns its result.

    ``unavailable(reason)`` builds the (one-line) error raised when the file cannot be fetched;
    an exception from ``verify`` propagates and leaves ``dest`` untouched.
    """
    from tqdm.auto import tqdm

    log.info("downloading %s to %s", url, dest)
    request = urllib.request.Request(url, headers={"User-Agent": "svde"})
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S if timeout is None else timeout)
    except urllib.error.HTTPError as exc:
        raise unavailable(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise unavailable(str(exc.reason)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise unavailable(f"{type(exc).__name__}: {exc}") from None
    with response, atomic_path(dest) as tmp:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        digest, received = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                            desc=dest.name, disable=not progress) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            raise unavailable(f"download interrupted after {received} bytes: {type(exc).__name__}: {exc}") from None
        if total is not None and received != total:
            raise unavailable(f"download ended after {received} of {total} bytes")
        result = verify(tmp, digest.hexdigest())
    log.info("saved %s (%d bytes)", dest, received)
    return result
