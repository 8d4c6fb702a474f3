"""The tutorial's edge detector, exactly as the tutorial gives it, and a vectorised twin.

`detect_edges_tutorial` is the body of the tutorial's `process_single_image`: pure Python
over `img.getdata()`. For each pixel it sums |ΔR|+|ΔG|+|ΔB| to its right and lower
neighbours (those inside the image), takes the floor mean over the neighbours it has, and
paints the pixel white when that exceeds 30, black otherwise; the bottom-right pixel, which
has no neighbour, is black. It is slow on purpose: it is the CPU-bound half of the program.

`detect_edges_vectorised` computes the same thing with numpy, in whole-array operations;
the tests check both give the same pixels.

The functions the pipeline hands to threads, processes or a cluster are here too, at module
level so they pickle by reference:

- `process_single_image(orig_path, save_path, detector)` - the tutorial's shape: read a file,
  detect, write the result (atomically: temp file + rename). Sequential and threads use it.
- `process_image_bytes(jpeg, detector)` - bytes in, JPEG bytes out. The executor variants
  use it, so the CPU stage works on any `concurrent.futures.Executor`, including a Dask
  cluster on other machines that cannot see this machine's files.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

from PIL import Image

THRESHOLD = 30


def _getdata(img: Image.Image):
    """`img.getdata()`, as the tutorial has it. Pillow 12.1 deprecated it (removal in 14)
    for `get_flattened_data()`, which gives the same pixel tuples: use that where it exists."""
    flat = getattr(img, "get_flattened_data", None)
    return flat() if flat is not None else img.getdata()


def detect_edges_tutorial(img: Image.Image) -> Image.Image:
    """The tutorial's algorithm, line for line (its prints and file handling aside; and
    `img.getdata()` goes through `_getdata`, for Pillow versions that no longer have it)."""
    data = list(_getdata(img))
    width, height = img.size
    new_data = []
    for i in range(len(data)):
        current_r, current_g, current_b = data[i]
        total_diff = 0
        neighbor_count = 0
        for dx, dy in [(1, 0), (0, 1)]:
            x = (i % width) + dx
            y = (i // width) + dy
            if 0 <= x < width and 0 <= y < height:
                neighbor_r, neighbor_g, neighbor_b = data[y * width + x]
                diff = abs(current_r - neighbor_r) + abs(current_g - neighbor_g) + abs(current_b - neighbor_b)
                total_diff += diff
                neighbor_count += 1
        if neighbor_count > 0:
            edge_strength = total_diff // neighbor_count
            if edge_strength > 30:
                new_data.append((255, 255, 255))
            else:
                new_data.append((0, 0, 0))
        else:
            new_data.append((0, 0, 0))
    edge_img = Image.new("RGB", (width, height))
    edge_img.putdata(new_data)
    return edge_img


def detect_edges_vectorised(img: Image.Image) -> Image.Image:
    """The same edges with numpy: identical pixels, a few hundred times faster."""
    import numpy as np

    a = np.asarray(img, dtype=np.int16)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got mode {img.mode}")
    height, width = a.shape[:2]
    total = np.zeros((height, width), np.int32)
    count = np.zeros((height, width), np.int32)
    total[:, :-1] += np.abs(a[:, :-1] - a[:, 1:]).sum(axis=2)  # right neighbour
    count[:, :-1] += 1
    total[:-1, :] += np.abs(a[:-1, :] - a[1:, :]).sum(axis=2)  # lower neighbour
    count[:-1, :] += 1
    edges = np.zeros((height, width), bool)
    has = count > 0
    edges[has] = total[has] // count[has] > THRESHOLD
    out = np.zeros((height, width, 3), np.uint8)
    out[edges] = 255
    return Image.fromarray(out, "RGB")


DETECTORS = {
    "tutorial": detect_edges_tutorial,
    "vectorised": detect_edges_vectorised,
}


def detect_edges(img: Image.Image, detector: str = "tutorial") -> Image.Image:
    try:
        fn = DETECTORS[detector]
    except KeyError:
        raise ValueError(f"unknown detector {detector!r} (choose from {', '.join(DETECTORS)})") from None
    return fn(img)


def _encode(edge_img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    edge_img.save(buf, format=fmt)
    return buf.getvalue()


def _format_for(path) -> str:
    ext = os.path.splitext(str(path))[1].lower()
    Image.init()
    try:
        return Image.EXTENSION[ext]
    except KeyError:
        raise ValueError(f"cannot tell the image format of {path}") from None


def process_image_bytes(jpeg: bytes, detector: str = "tutorial", fmt: str = "JPEG") -> bytes:
    """Decode an image, detect its edges, encode the result. For any executor."""
    with Image.open(io.BytesIO(jpeg)) as img:
        edge_img = detect_edges(img, detector)
    return _encode(edge_img, fmt)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it and a rename: the path
    holds either nothing or the whole file, never half of it."""
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def temp_path_for(path: Path) -> Path:
    """A hidden, unique name beside `path` (same folder, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def process_single_image(orig_path: Path, save_path: Path, detector: str = "tutorial") -> Path:
    """The tutorial's `process_single_image`: read the original, detect edges, save the
    result under the same name (so the same format) in the processed folder."""
    with open(orig_path, "rb") as f:
        jpeg = f.read()
    write_atomic(save_path, process_image_bytes(jpeg, detector, _format_for(save_path)))
    return save_path
