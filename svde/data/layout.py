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
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

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


def check_intrinsics(value: Any, where: str) -> np.ndarray | None:
    """A dataset's intrinsics option or file value: ``None``, or ``[fx, fy, cx, cy]`` checked by
    :func:`svde.geometry.as_intrinsics` (the one conversion) -> float64 (4,) array, as samples carry it.

    A bad value is a :class:`~svde.data.base.DataError` naming ``where`` (a file or config key).

    Example:
        >>> check_intrinsics([500, 500, 320, 240], "cfg").tolist(), check_intrinsics(None, "cfg")
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


# ---- the photos of a user's folder (svde predict) --------------------------------------------
# Why a file of a folder is not predicted (:func:`scan_images`); the CLI prints one note per reason.
SKIP_OUTPUT, SKIP_NOT_IMAGE, SKIP_NOT_PHOTO = "svde_output", "not_image", "not_photo"
# PIL modes of single-channel images deeper than 8 bits (depth and disparity maps: 16-bit PNG, float TIFF).
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# PIL modes that might hold a mask (1-bit, greyscale, palette): 2-valued ones are masks.
_MASK_MODES = ("L", "LA", "P", "PA")


class ImageScan(NamedTuple):
    """What :func:`scan_images` found: the photos to predict, the files it passed over (by
    reason: ``SKIP_OUTPUT``, ``SKIP_NOT_IMAGE``, ``SKIP_NOT_PHOTO``) and, when not recursive,
    the subfolders it did not search."""

    images: list[Path]
    skipped: dict[str, list[Path]]
    subfolders: list[Path]


def svde_output(path: Path, names: set[str] | frozenset[str] = frozenset()) -> bool:
    """Whether ``path`` is named as a file ``svde predict`` writes (``names``: the names in its folder).

    ``NAME.vis.png``; ``NAME.<domain>.npy``; ``NAME.<domain>.png`` with its ``NAME.<domain>.json``
    sidecar beside it (in ``names``), and that sidecar; ``NAME.ply`` and ``NAME.mesh.ply``.

    Example:
        >>> [svde_output(Path(n), {"a.depth.png", "a.depth.json"}) for n in
        ...  ("a.vis.png", "a.depth.png", "a.depth.json", "b.depth.png", "a.ply", "a.png", "a.vis.jpg")]
        [True, True, True, False, True, False, False]
    """
    from svde.models.prediction import DOMAINS  # torch: only when a folder is scanned

    name = path.name.lower()
    suffix = path.suffix.lower()
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    domain = Path(stem).suffix[1:]
    if name.endswith(".vis.png") or suffix == ".ply":
        return True
    if domain not in DOMAINS:
        return False
    if suffix == ".npy":
        return True
    if suffix == ".json":
        return f"{stem}.png" in names
    return suffix == ".png" and f"{stem}.json" in names


def photo_check(path: Path) -> str | None:
    """Why the image file ``path`` is not a photo (a depth map, a mask), or ``None`` when it is one.

    The rule, from the header (PIL's mode; no pixels decoded) where possible:

    * 1-bit images are masks;
    * single-channel images deeper than 8 bits (16-bit PNG/TIFF/PGM, 32-bit integer or float) are
      depth or disparity maps;
    * 8-bit greyscale and palette images are decoded and are masks when they hold at most two
      values; with more they are greyscale photos (predicted, replicated to RGB);
    * everything with colour channels is a photo, and so is a file PIL cannot open
      (:func:`svde.data.io.read_image` then reads it or names what is wrong with it).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: the header is all we read
            with Image.open(path) as im:
                mode = im.mode
                if mode == "1":
                    return "1-bit (a mask)"
                if mode in _DEEP_MODES:
                    return f"single-channel, more than 8 bits ({mode}: a depth map)"
                if mode in _MASK_MODES and im.getcolors(maxcolors=2) is not None:
                    return f"two values or fewer ({mode}: a mask)"
    except Exception:  # noqa: BLE001 - not readable by PIL: read_image has the last word
        return None
    return None


def scan_images(path: str | os.PathLike, *, recursive: bool,
                exclude: Iterable[str | os.PathLike] = ()) -> ImageScan:
    """The photos in ``path`` (a folder, or one image file), with what was passed over and why.

    In a folder (its subfolders too with ``recursive``; hidden files and folders never, nor the
    folders of ``exclude``, e.g. the output folder) a file is a photo when its extension is one of
    :data:`USER_IMAGE_EXTS` (any case), it is not a file ``svde predict`` writes
    (:func:`svde_output`) and :func:`photo_check` finds no reason against it. A single file is
    always predicted when its extension is an image's (the user named it); otherwise it is an
    error. Everything comes back sorted.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("a.jpg", "a.vis.png", "a.log_disparity.npy", "notes.txt", "sub/b.jpg"):
        ...     (root / name).parent.mkdir(exist_ok=True); (root / name).touch()
        >>> scan = scan_images(root, recursive=False)
        >>> [p.name for p in scan.images], {k: [p.name for p in v] for k, v in scan.skipped.items()}
        (['a.jpg'], {'svde_output': ['a.log_disparity.npy', 'a.vis.png'], 'not_image': ['notes.txt']})
        >>> [p.name for p in scan.subfolders], [p.name for p in scan_images(root, recursive=True).images]
        (['sub'], ['a.jpg', 'b.jpg'])
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in USER_IMAGE_EXTS:
            raise DataError(f"{path} is not an image file (extensions: {', '.join(USER_IMAGE_EXTS)})")
        return ImageScan([path], {}, [])
    if not path.is_dir():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    excluded = {Path(p).resolve() for p in exclude}
    images: list[Path] = []
    skipped: dict[str, list[Path]] = {}
    subfolders: list[Path] = []
    pending = [path]
    while pending:
        folder = pending.pop()
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        names = {p.name for p in entries}
        for entry in entries:
            if entry.is_dir():
                if entry.resolve() in excluded:
                    continue
                (pending if recursive else subfolders).append(entry)
            elif entry.is_file():
                if svde_output(entry, names):
                    reason = SKIP_OUTPUT
                elif entry.suffix.lower() not in USER_IMAGE_EXTS:
                    reason = SKIP_NOT_IMAGE
                elif photo_check(entry) is not None:
                    reason = SKIP_NOT_PHOTO
                else:
                    images.append(entry)
                    continue
                skipped.setdefault(reason, []).append(entry)
    return ImageScan(sorted(images), {k: sorted(v) for k, v in skipped.items()}, sorted(subfolders))


def list_images(path: str | os.PathLike, recursive: bool = True) -> tuple[list[Path], list[Path]]:
    """The photos under ``path`` (a file, or a folder searched recursively unless ``recursive`` is
    false) and the skipped files: :func:`scan_images`, with the reasons merged.

    Returns ``(images, skipped)``, both sorted. A single file that is not an image is an error.

    Example:
        >>> images, skipped = list_images("photos/")  # doctest: +SKIP
    """
    scan = scan_images(path, recursive=recursive)
    return scan.images, sorted(p for files in scan.skipped.values() for p in files)
