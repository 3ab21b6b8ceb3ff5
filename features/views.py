"""What a backbone sees of an image: the JPEG decoded reduced to just above the network's input size, the whole
frame and the detector's top boxes cut as square views, decoded in a thread pool ahead of inference."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Callable, Iterable, Iterator, NamedTuple

import cv2
import numpy as np
import pandas as pd

from data import ImageError, read_image
from data.images import REDUCTIONS, JpegPolicy

PAD_VALUE = (127, 127, 127)  # mid-grey: close to zero after every backbone's input scaling


class Views(NamedTuple):
    frame: np.ndarray | None  # RGB uint8 (S, S, 3)
    crops: np.ndarray         # RGB uint8 (k, S, S, 3), k may be 0
    error: str | None         # why the image could not be used
    problem: str | None       # a decoding error the image was kept despite


def square_crop(image: np.ndarray, box: tuple[float, float, float, float], margin: float, size: int
                ) -> np.ndarray:
    """The square around a normalised (x, y, w, h) box, its side the box's longer side plus `margin` of
    it on each side, padded with grey where it leaves the image, resized to `size` x `size`."""
    h, w = image.shape[:2]
    x, y, bw, bh = box
    side = max(int(round(max(bw * w, bh * h) * (1 + 2 * margin))), 1)
    x0 = int(round((x + bw / 2) * w - side / 2))
    y0 = int(round((y + bh / 2) * h - side / 2))
    x1, y1 = x0 + side, y0 + side
    inside = image[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
    if inside.size == 0:  # the loader clips boxes into the frame, so only a degenerate box lands here
        inside = np.full((1, 1, 3), PAD_VALUE, np.uint8)
    pads = [max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0)]
    square = cv2.copyMakeBorder(inside, *pads, cv2.BORDER_CONSTANT, value=PAD_VALUE) if any(pads) else inside
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)


def decode_reduction(width: int, height: int, boxes: list[tuple], margin: float, size: int) -> int:
    """Largest JPEG reduction keeping the frame's short side and every crop's side at least `size` pixels
    (width and height are the full size, read from the JPEG header)."""
    needed = [min(width, height)] + [max(b[2] * width, b[3] * height) * (1 + 2 * margin) for b in boxes]
    smallest = min(needed)
    return max((f for f in REDUCTIONS if smallest / f >= size), default=1)


def image_views(item: dict, size: int, margin: float, policy: JpegPolicy = JpegPolicy()) -> Views:
    """Decode one image (reduced) and cut its frame and crop views; errors become a reason, not an exception."""
    no_crops = np.empty((0, size, size, 3), np.uint8)
    try:
        image, _, _, problem = read_image(
            item["path"], lambda w, h: decode_reduction(w, h, item["boxes"], margin, size),
            (item["width"], item["height"]), policy)
    except ImageError as e:
        return Views(None, no_crops, e.reason, None)
    frame = cv2.cvtColor(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    crops = [cv2.cvtColor(square_crop(image, b, margin, size), cv2.COLOR_BGR2RGB) for b in item["boxes"]]
    return Views(frame, np.stack(crops) if crops else no_crops, None, problem)


def prefetched(fn: Callable, items: Iterable, workers: int, ahead: int) -> Iterator:
    """fn(item) for each item, in order, computed by `workers` threads up to `ahead` items in advance
    (OpenCV decodes without the GIL, so decoding overlaps inference)."""
    items = iter(items)
    with ThreadPoolExecutor(workers) as pool:
        pending = deque(pool.submit(fn, item) for item in islice(items, ahead))
        while pending:
            result = pending.popleft().result()
            for item in islice(items, 1):
                pending.append(pool.submit(fn, item))
            yield result


def crop_boxes(detections: pd.DataFrame, top_k: int, min_conf: float) -> pd.Series:
    """Per image, its `top_k` most confident boxes (x, y, w, h) at or above `min_conf`."""
    sure = detections.loc[detections["conf"] >= min_conf].sort_values("conf", ascending=False, kind="stable")
    top = sure.groupby("image_id", observed=True, sort=False).head(top_k)
    boxes = pd.Series(list(zip(top["x"], top["y"], top["w"], top["h"])), index=top["image_id"].astype(str))
    return boxes.groupby(level=0, sort=False).agg(list)
