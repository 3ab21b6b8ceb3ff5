"""Reading camera-trap JPEGs safely and cheaply (reduced decode when the consumer wants small images).

An image is judged by decoding it, not by its last bytes: camera firmware often writes maker text or
padding after the end-of-image marker, and such files decode fully. libjpeg-turbo (simplejpeg) reports
every recoverable error that OpenCV's decoder only prints, so a truncated file and a file whose body is
corrupt but whose markers are intact are told apart from a good one. The header is checked before any
pixel is decoded: a flipped bit that claims 65000 x 65000 pixels must not take a worker's memory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import simplejpeg
from PIL import Image

from data.quality import QualityReport

REDUCTIONS = (1, 2, 4, 8)  # the JPEG DCT scalings that decode faster than full size
EXIF_ORIENTATION = 0x0112
TRUNCATED = "truncated JPEG (the image data ends early)"
HEADER_BYTES = 1 << 18  # camera headers (EXIF, maker notes, thumbnail) fit in far less
ASPECT_TOLERANCE = 0.02  # a resized copy keeps the aspect ratio; a corrupted header does not
# EXIF orientation -> how to turn the stored pixels upright (as OpenCV's imread and PIL's exif_transpose do)
ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
          7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}


class ImageError(ValueError):
    """An image that cannot be used (missing, not a JPEG, truncated, corrupt, implausible header): `reason`
    is the category it is counted under, the message adds the file and the particulars."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


class JpegPolicy(NamedTuple):
    """What a usable JPEG may be (params.yaml `jpeg`)."""
    max_megapixels: float = 100.0
    keep_decoded_with_errors: bool = False

    @classmethod
    def from_params(cls, cfg: dict) -> "JpegPolicy":
        return cls(float(cfg["max_megapixels"]), bool(cfg["keep_decoded_with_errors"]))


class Decoded(NamedTuple):
    image: np.ndarray      # BGR uint8, upright, reduced
    width: int             # full-size width and height of the upright image
    height: int
    problem: str | None    # a recoverable decoding error the image was kept despite, or None


def image_path(root: str | os.PathLike, split: str, file_name: str) -> Path:
    """Path of an image whose `file_name` the metadata loader has already checked to stay inside the folder."""
    return Path(root) / split / file_name


def reduction_for(width: int, height: int, target: int) -> int:
    """Largest JPEG DCT reduction (1, 2, 4, 8) that keeps the short side at least `target` pixels."""
    short = min(width, height)
    return max((f for f in REDUCTIONS if short // f >= target), default=1)


def metadata_size(value) -> float:
    """A metadata width or height as a plain float, NaN where the metadata lacks it (the header decides)."""
    return float("nan") if pd.isna(value) else float(value)


def _exif_block(data: bytes) -> bytes | None:
    """The EXIF APP1 segment of a JPEG, found by walking the header segments up to the first scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no more header segments
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xE1 and data[pos + 4:pos + 10] == b"Exif\x00\x00":
            return data[pos + 4:pos + 2 + length]
        pos += 2 + length
    return None


def _orientation(data: bytes) -> int:
    """EXIF orientation tag (1 = upright); most camera-trap files have none. A malformed EXIF block counts
    as upright: the pixels are still good."""
    block = _exif_block(data)
    if block is None:
        return 1
    try:
        value = Image.Exif()
        value.load(block)
        value = value.get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - Pillow raises many kinds on a malformed EXIF block
        return 1
    return value if value in ORIENT else 1


def _read(path: str | os.PathLike, limit: int = -1) -> bytes:
    """The file's bytes (its first `limit` bytes if given), which must start as a JPEG does."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
    except (FileNotFoundError, IsADirectoryError) as e:
        raise ImageError(path, "file missing") from e
    if not data.startswith(b"\xff\xd8"):
        raise ImageError(path, "not a JPEG")
    return data


def _header(data: bytes, path: str | os.PathLike) -> tuple[int, int, int]:
    """(width, height) as stored and the EXIF orientation, from the JPEG header alone."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data, strict=False)
    except (ValueError, KeyError) as e:  # KeyError: simplejpeg on a header cut short
        if b"\xff\xda" not in data:  # no start of scan: the file ends inside its header
            raise ImageError(path, TRUNCATED) from e
        raise ImageError(path, "undecodable JPEG header", str(e)) from e
    return width, height, _orientation(data)


def _upright(width: int, height: int, orientation: int) -> tuple[int, int]:
    """Width and height once the EXIF orientation is applied (5-8 turn the image a quarter)."""
    return (height, width) if orientation >= 5 else (width, height)


def jpeg_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a JPEG file from its header, without decoding pixels (nor, mostly, reading them)."""
    try:
        header = _header(_read(path, HEADER_BYTES), path)
    except ImageError:  # header segments longer than the first block
        header = _header(_read(path), path)
    return _upright(*header)


def _check_size(path, width: int, height: int, expected: tuple | None, policy: JpegPolicy) -> None:
    if width * height > policy.max_megapixels * 1e6:
        raise ImageError(path, "JPEG header size over jpeg.max_megapixels",
                         f"{width}x{height}, limit {policy.max_megapixels:g} MP")
    if expected is None or any(pd.isna(v) for v in expected):
        return
    ew, eh = float(expected[0]), float(expected[1])
    ratio = (width / height) / (ew / eh)
    # either orientation: the metadata may give the stored or the upright size
    if min(abs(ratio - 1), abs(ratio * (ew / eh) ** 2 - 1)) > ASPECT_TOLERANCE:
        raise ImageError(path, "JPEG header size does not fit the metadata's width/height",
                         f"{width}x{height} vs {int(ew)}x{int(eh)}")


def _decode(data: bytes, stored: tuple[int, int], factor: int, strict: bool) -> np.ndarray:
    width, height = stored
    return simplejpeg.decode_jpeg(data, colorspace="BGR", min_width=-(-width // factor),
                                  min_height=-(-height // factor), strict=strict)


def read_image(path: str | os.PathLike, reduction: int | Callable[[int, int], int] = 1,
               expected: tuple | None = None, policy: JpegPolicy = JpegPolicy()) -> Decoded:
    """Decode a JPEG upright to BGR uint8, `reduction` times smaller per side (an int, or a function of
    the full-size width and height read from the header). ImageError if unusable: missing, not a JPEG,
    header over the size limit or inconsistent with the `expected` (metadata) width and height,
    truncated, or decoded with errors (unless the policy keeps those, then `problem` says so)."""
    data = _read(path)
    header = _header(data, path)
    stored, orientation = header[:2], header[2]
    width, height = _upright(*header)
    _check_size(path, width, height, expected, policy)
    factor = reduction(width, height) if callable(reduction) else reduction
    problem = None
    try:
        image = _decode(data, stored, factor, strict=True)
    except ValueError as e:
        message = str(e)
        if message.startswith("Premature end of JPEG file"):
            # the data ran out: fine if only the end-of-image marker was missing, truncated otherwise
            try:
                image = _decode(data + b"\xff\xd9", stored, factor, strict=True)
            except ValueError:
                raise ImageError(path, TRUNCATED) from e
        elif not policy.keep_decoded_with_errors:
            raise ImageError(path, "JPEG decoded with errors", message) from e
        else:
            try:
                image = _decode(data, stored, factor, strict=False)
            except ValueError as hard:
                raise ImageError(path, "undecodable JPEG", str(hard)) from hard
            problem = f"JPEG decoded with errors, kept ({message})"
    if orientation in ORIENT:
        image = np.ascontiguousarray(ORIENT[orientation](image))
    return Decoded(image, width, height, problem)


def report_computed(report: QualityReport, images: pd.DataFrame, computed: pd.DataFrame, n_fresh: int,
                    n_cached: int) -> pd.DataFrame:
    """A pixel family's per-image results (a cache fill's, with `error` and `problem` columns) aligned with
    `images`, after counting them (computed now, from the cache) and every image that could not be read: files
    the loader flagged (missing, empty, escaping the image folder, an unreadable header) and, per reason, those
    that failed to decode; and the images kept although they decoded with errors."""
    report.count_read("images computed", n_fresh)
    report.count_read("images from cache", n_cached)
    computed = computed.reindex(images.index)
    reasons, problems = computed["error"], computed["problem"]
    report.skip_many("image not readable: no usable file at load (missing, empty, escaping the folder or an "
                     "unreadable header: see load report)",
                     list(images.index[~images["file_ok"]]))
    reasons = reasons.dropna()
    for reason, ids in reasons.groupby(reasons).groups.items():
        report.skip_many(f"image not readable: {reason}", list(ids))
    report.skip_many("image used although its JPEG decoded with errors (jpeg.keep_decoded_with_errors)",
                     [f"{i}: {p}" for i, p in problems.dropna().items()])
    return computed
