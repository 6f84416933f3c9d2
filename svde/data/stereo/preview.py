"""Pictures of prepared stereo data, to judge a film's frames before training on them.

``prepare`` (``svde prepare-stereo``, unless ``--no-preview``) writes, under its output folder::

    preview/<name>.jpg           a kept frame as stored: left view | disparity (colour: near = bright,
                                 2nd..98th percentile of the valid pixels; invalid grey) | mask (white = valid)
    preview/dropped/<name>.jpg   a dropped frame that decoded: left view | right view, with horizontal
                                 guide lines (a vertical offset between the views shows against them)
    preview/contact_sheet.jpg    the first N kept and the first N dropped frames (manifest order, every
                                 manifest of the folder), each captioned: kept with its valid share and
                                 disparity range, dropped with its reason

Frame previews are written by the matching processes as each frame is decided (:func:`previewed`
wraps the pipeline's per-frame function); :func:`write_contact_sheet` reads the manifests and the
previews afterwards (a kept frame without a preview, e.g. prepared before with ``--no-preview``,
is drawn from its stored files; a dropped frame without one, e.g. not decoded or at a scene cut,
gets a grey tile). Previews are not part of the dataset: ``stereo_folder`` reads ``left/``,
``disparity/`` and ``mask/`` only, and deleting ``preview/`` changes nothing else.

Example:
    >>> import numpy as np
    >>> left = np.zeros((60, 80, 3), np.uint8)
    >>> kept_picture(left, np.ones((60, 80), np.float32), np.ones((60, 80), bool)).shape
    (160, 643, 3)
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from svde.atomic import remove_stale_temporaries, write_bytes
from svde.data.base import DataError
from svde.viz import colorize

log = logging.getLogger(__name__)
PREVIEW_FOLDER = "preview"
PANEL_HEIGHT = 160  # px: each view of a frame preview
SHEET_FRAMES = 12  # kept and dropped frames on the contact sheet (each)
SHEET_TILE_WIDTH = 480  # px
SHEET_COLUMNS = 2
JPEG_QUALITY = 88
FONT = cv2.FONT_HERSHEY_SIMPLEX
GAP = 2  # px between panels
INVALID_GREY = 110  # the disparity panel's invalid pixels: a grey magma does not have


def _encode_jpeg(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"cannot encode {path} as JPEG")
    write_bytes(path, buf.tobytes())


def _panel(image: np.ndarray, label: str, height: int = PANEL_HEIGHT) -> np.ndarray:
    """``image`` (RGB or grey) resized to ``height``, labelled in its top-left corner."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)
    (text_width, _), _ = cv2.getTextSize(label, FONT, 0.42, 1)
    box = out[:20, :text_width + 8]
    box[:] = (box * 0.35).astype(np.uint8)  # a dark box under the label: legible on white (a full mask) too
    cv2.putText(out, label, (4, 14), FONT, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4,
          colour: tuple[int, int, int] = (255, 255, 255)) -> None:
    """Text with a dark outline, legible on any background (drawn in place)."""
    cv2.putText(image, text, origin, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, FONT, scale, colour, 1, cv2.LINE_AA)


def _row(panels: list[np.ndarray]) -> np.ndarray:
    height = panels[0].shape[0]
    gap = np.full((height, GAP, 3), 128, np.uint8)  # grey: a white mask panel still has an edge
    parts = [p for panel in panels for p in (panel, gap)][:-1]
    return np.ascontiguousarray(np.hstack(parts))


def kept_picture(left: np.ndarray, disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """RGB uint8: left view | disparity in colour (invalid grey) | mask, each :data:`PANEL_HEIGHT` high."""
    colour = colorize(disparity, mask=valid) if valid.any() else np.zeros(left.shape, np.uint8)
    colour[~valid] = INVALID_GREY  # magma's far end is black: invalid pixels must not look far
    return _row([_panel(left, "left"), _panel(colour, "disparity"),
                 _panel(valid.astype(np.uint8) * 255, "mask")])


def dropped_picture(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """RGB uint8: left view | right view, with the same horizontal guide lines across both."""
    panels = [_panel(left, "left"), _panel(right, "right")]
    for panel in panels:
        for y in range(PANEL_HEIGHT // 8, PANEL_HEIGHT, PANEL_HEIGHT // 8):
            panel[y, ::2] = (0, 255, 255)
    return _row(panels)


def preview_path(out: Path, name: str, kept: bool) -> Path:
    """Where the preview of frame ``name`` goes (see the module docstring)."""
    return Path(out) / PREVIEW_FOLDER / ("" if kept else "dropped") / f"{name}.jpg"


def _read_stored(out: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A kept frame's stored left view, disparity and mask (the files a ``stereo_folder`` reads)."""
    from svde.data.io import read_gray, read_image

    left = read_image(out / "left" / f"{name}.png")
    try:
        disparity = np.load(out / "disparity" / f"{name}.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{out / 'disparity' / name}.npy: {exc}") from None
    return left, disparity, read_gray(out / "mask" / f"{name}.png") > 0


def write_frame_preview(out: Path, record: dict[str, Any], left: np.ndarray | None = None,
                        right: np.ndarray | None = None) -> Path | None:
    """Write the preview of one decided frame (a kept one from its stored files, a dropped one from
    ``left``/``right`` when it decoded); returns its path, or None when there is nothing to show."""
    name, kept = record["name"], record["status"] == "kept"
    if kept:
        picture = kept_picture(*_read_stored(Path(out), name))
    elif left is not None and right is not None:
        picture = dropped_picture(left, right)
    else:
        return None
    path = preview_path(out, name, kept)
    _encode_jpeg(path, picture)
    return path


def previewed(process: Callable[[tuple], dict[str, Any]], task: tuple) -> dict[str, Any]:
    """``process(task)`` (the pipeline's per-frame function), then the frame's preview.

    ``task`` is the pipeline's ``(ref, left, right, reason, out_dir, ...)``. A preview that cannot
    be made is a warning, never a failed frame.
    """
    record = process(task)
    _, left, right, _, out_dir = task[:5]
    try:
        write_frame_preview(Path(out_dir), record, left, right)
    except (OSError, DataError, cv2.error, ValueError) as exc:
        log.warning("%s: no preview (%s)", record["name"], exc)
    return record


# ---- the contact sheet ---------------------------------------------------------------------------
def _records(out: Path) -> list[dict[str, Any]]:
    """Every frame record of the folder's manifests (all shardings), in manifest order."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("manifest*.json")):
        try:
            frames = json.loads(path.read_text()).get("frames", [])
        except (OSError, ValueError, AttributeError):
            continue
        records.update((r["name"], r) for r in frames if isinstance(r, dict) and {"name", "status"} <= set(r))
    return sorted(records.values(), key=lambda r: (str(r.get("source", "")), r.get("frame_index", 0), r["name"]))


def _picture(out: Path, record: dict[str, Any], width: int) -> np.ndarray:
    """A frame's preview (drawn now for a kept frame without one; a grey box when there is none)
    scaled to ``width``."""
    kept = record["status"] == "kept"
    path = preview_path(out, record["name"], kept)
    picture = None
    try:
        if not path.is_file() and kept:
            write_frame_preview(out, record)
        if path.is_file():
            picture = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    except (OSError, DataError, cv2.error, ValueError) as exc:
        log.warning("%s: no preview on the contact sheet (%s)", record["name"], exc)
    if picture is None:
        picture = np.full((width // 4, width, 3), 96, np.uint8)
        _text(picture, "no picture (not decoded, or not read)", (8, width // 8), scale=0.45)
        return picture
    height = max(1, round(picture.shape[0] * width / picture.shape[1]))
    picture = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
    cv2.rectangle(picture, (0, 0), (width - 1, height - 1), (128, 128, 128), 1)
    return picture


def _caption(record: dict[str, Any], width: int, lines: int) -> np.ndarray:
    if record["status"] == "kept":
        lo, hi = record.get("disparity_range", [float("nan")] * 2)
        text = [f"{record['name']}: kept", f"{record.get('kept_fraction', 0):.0%} valid, disparity {lo:.1f}..{hi:.1f} px"]
    else:
        text = [f"{record['name']}: dropped", *textwrap.wrap(str(record.get("reason", "")), width // 6)]
    caption = np.full((14 * lines + 8, width, 3), 255, np.uint8)
    for i, line in enumerate(text[:lines]):
        colour = ((0, 110, 0) if record["status"] == "kept" else (170, 0, 0)) if i == 0 else (30, 30, 30)
        cv2.putText(caption, line, (2, 16 + 14 * i), FONT, 0.4, colour, 1, cv2.LINE_AA)
    return caption


def _section(out: Path, title: str, records: list[dict[str, Any]], lines: int) -> list[np.ndarray]:
    """A titled block of the sheet: :data:`SHEET_COLUMNS` tiles a row, each picture over its caption."""
    width = SHEET_TILE_WIDTH * SHEET_COLUMNS + 8 * (SHEET_COLUMNS - 1)
    header = np.full((34, width, 3), 255, np.uint8)
    cv2.putText(header, title, (2, 24), FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [header]
    for i in range(0, len(records), SHEET_COLUMNS):
        group = records[i:i + SHEET_COLUMNS]
        pictures = [_picture(out, r, SHEET_TILE_WIDTH) for r in group]
        height = max(p.shape[0] for p in pictures)
        tiles = [np.vstack([np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=255),
                            _caption(r, SHEET_TILE_WIDTH, lines)]) for p, r in zip(pictures, group)]
        tiles += [np.full_like(tiles[0], 255)] * (SHEET_COLUMNS - len(tiles))
        spacer = np.full((tiles[0].shape[0], 8, 3), 255, np.uint8)
        rows.append(np.hstack([part for tile in tiles for part in (tile, spacer)][:-1]))
    return rows


def write_contact_sheet(out: str | Path, frames: int = SHEET_FRAMES) -> Path | None:
    """Write ``preview/contact_sheet.jpg`` for the prepared folder ``out``: its first ``frames`` kept
    and first ``frames`` dropped frames, captioned; returns its path (None: no manifest, no frame)."""
    out = Path(out)
    records = _records(out)
    if not records:
        return None
    for folder in (out / PREVIEW_FOLDER, out / PREVIEW_FOLDER / "dropped"):  # a killed run's half-written previews
        remove_stale_temporaries(folder, older_than_s=3600)
    kept = [r for r in records if r["status"] == "kept"]
    dropped = [r for r in records if r["status"] != "kept"]
    rows = []
    if kept:
        rows += _section(out, f"kept: {len(kept)} frames (the first {min(frames, len(kept))} shown)",
                         kept[:frames], lines=2)
    if dropped:
        rows += _section(out, f"dropped: {len(dropped)} frames (the first {min(frames, len(dropped))} shown, "
                              f"with the reason)", dropped[:frames], lines=4)
    sheet = np.vstack(rows)
    path = out / PREVIEW_FOLDER / "contact_sheet.jpg"
    _encode_jpeg(path, sheet)
    return path
