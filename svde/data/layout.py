"""Layout helpers shared by every loader: split checks, image extensions, list files, pairing by
stem and intrinsics validation. File *contents* are read in :mod:`svde.data.io`.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("rgb/a.jpg", "rgb/b.png", "depth/a.png", "depth/b.png"):
    ...     (root / name).parent.mkdir(exist_ok=True); (root / name).touch()
    >>> [(i.name, d.name) for i, d in pair_by_stem(root / "rgb", root / "depth", lambda p: [p.stem + ".png"])]
    [('a.jpg', 'a.png'), ('b.png', 'b.png')]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from svde import geometry
from svde.data.base import DataError

# Image files of the public datasets' native layouts.
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
# Image files accepted in user folders (everything :func:`svde.data.io.read_image` decodes well).
USER_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
EVAL_SPLITS = (None, "test")  # eval sets whose root *is* the test set
TRAIN_SPLITS = (None, "train")  # sets without an official split: everything under root


def check_split(dataset: str, split: str | None, allowed: Sequence[str | None]) -> None:
    """Raise a :class:`~svde.data.base.DataError` unless ``split`` is one of ``allowed``.

    Example:
        >>> check_split("nyu", "val", ("test", "train"))
        Traceback (most recent call last):
        ...
        svde.data.base.DataError: nyu: unknown split 'val'; valid splits: 'test', 'train'
    """
    if split not in allowed:
        raise DataError(f"{dataset}: unknown split {split!r}; valid splits: {', '.join(map(repr, allowed))}")


def as_intrinsics(value: Any, where: str) -> np.ndarray | None:
    """``None``, or ``[fx, fy, cx, cy]`` checked by :func:`svde.geometry.as_intrinsics` -> float64 (4,) array.

    A bad value is a :class:`~svde.data.base.DataError` naming ``where`` (a file or config key).

    Example:
        >>> as_intrinsics([500, 500, 320, 240], "cfg").tolist(), as_intrinsics(None, "cfg")
        ([500.0, 500.0, 320.0, 240.0], None)
    """
    if value is None:
        return None
    try:
        return np.asarray(geometry.as_intrinsics(value), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {exc}") from None


def pair_by_stem(image_dir: Path, depth_dir: Path, depth_names: Callable[[Path], Iterable[str]],
                 image_exts: Sequence[str] = IMAGE_EXTS, dataset: str = "",
                 pattern: str = "*") -> list[tuple[Path, Path]]:
    """Pair every image in ``image_dir`` with the first existing ``depth_dir / name`` of ``depth_names(image)``.

    Images are the files matching ``pattern`` whose extension (any case) is in ``image_exts``,
    sorted by path. An image with no depth file is an error naming the image and the depth files
    looked for (see the module example).
    """
    images = sorted(p for p in image_dir.glob(pattern) if p.is_file() and p.suffix.lower() in image_exts)
    pairs = []
    for image in images:
        candidates = [depth_dir / n for n in depth_names(image)]
        depth = next((c for c in candidates if c.is_file()), None)
        if depth is None:
            raise DataError(f"{dataset}: no depth file for {image}; looked for {', '.join(map(str, candidates))}")
        pairs.append((image, depth))
    return pairs


def parse_list(path: Path, min_tokens: int = 1, inline_comments: bool = False) -> list[tuple[int, list[str]]]:
    """(line number, tokens) of a whitespace-separated list file, skipping blanks and ``#`` comments.

    A line starting with ``#`` is a comment; with ``inline_comments`` so is everything after a
    ``#`` anywhere on a line.

    Example:
        >>> import tempfile
        >>> lst = Path(tempfile.mkdtemp()) / "list.txt"
        >>> _ = lst.write_text("# image depth\\n\\na.jpg a.png  # first\\n")
        >>> parse_list(lst, inline_comments=True)
        [(3, ['a.jpg', 'a.png'])]
    """
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = (line.split("#", 1)[0] if inline_comments else line).strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < min_tokens:
            raise DataError(f"{path}:{n}: expected at least {min_tokens} fields, got {line!r}")
        rows.append((n, tokens))
    return rows


def list_images(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """Images under ``path`` (a file, or a folder searched recursively) and the skipped files.

    Returns ``(images, skipped)``, both sorted; a file is an image by its extension
    (:data:`USER_IMAGE_EXTS`, any case). A single file that is not an image is an error.

    Example:
        >>> images, skipped = list_images("photos/")  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in USER_IMAGE_EXTS:
            raise DataError(f"{path} is not an image file (extensions: {', '.join(USER_IMAGE_EXTS)})")
        return [path], []
    if not path.is_dir():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in USER_IMAGE_EXTS]
    return images, [p for p in files if p.suffix.lower() not in USER_IMAGE_EXTS]
