"""The vectorised edge detector and the tutorial's agree pixel for pixel."""

import io

import numpy as np
import pytest
from PIL import Image

from ferroloop_demo import edges, images

from . import demo_helpers  # noqa: F401  (skips without the demo's requirements)


def both(img):
    a = np.asarray(edges.detect_edges_tutorial(img))
    b = np.asarray(edges.detect_edges_vectorised(img))
    assert a.shape == b.shape == (img.size[1], img.size[0], 3)
    return a, b


def test_full_size_demo_photo_pixel_for_pixel():
    """A 1920x1080 image as the demo serves it, decoded from its JPEG as the pipeline does."""
    jpeg = images.photo_jpeg(1)
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.size == (1920, 1080) and img.mode == "RGB"
        a, b = both(img)
    assert np.array_equal(a, b)
    white = (a == 255).all(axis=2)
    assert 0.001 < white.mean() < 0.2  # it finds edges, and not everywhere
    assert set(np.unique(a)) <= {0, 255}


@pytest.mark.parametrize("seed", range(5))
def test_random_noise(seed):
    rng = np.random.default_rng(seed)
    # Narrow value ranges put many pixels right at the threshold.
    arr = rng.integers(100, 100 + 2 * (seed + 8), size=(37, 53, 3), dtype=np.uint8)
    a, b = both(Image.fromarray(arr, "RGB"))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (2, 2), (3, 2)])
def test_degenerate_sizes(size):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    a, b = both(Image.fromarray(arr, "RGB"))
    assert np.array_equal(a, b)
    assert not a[-1, -1].any()  # the bottom-right pixel has no neighbour: black


@pytest.mark.parametrize("total,expected", [(61, 0), (62, 255), (60, 0), (63, 255)])
def test_threshold_two_neighbours(total, expected):
    """Floor mean over two neighbours, white when > 30: 61//2 = 30 stays black."""
    arr = np.zeros((2, 2, 3), np.uint8)
    arr[0, 1, 0] = min(total, 255)  # the right neighbour differs by `total`,
    arr[0, 1, 1] = max(0, total - 255)  # the lower one by 0
    a, b = both(Image.fromarray(arr, "RGB"))
    assert np.array_equal(a, b)
    assert a[0, 0, 0] == expected


def test_thresholds_one_neighbour():
    """Edge pixels have one neighbour: 30 is black, 31 is white."""
    arr = np.zeros((1, 3, 3), np.uint8)
    arr[0, 1] = (10, 10, 10)  # diff 30 from the left pixel
    arr[0, 2] = (20, 21, 10)  # diff 21 from the middle one
    a, b = both(Image.fromarray(arr, "RGB"))
    assert np.array_equal(a, b)
    assert a[0, :, 0].tolist() == [0, 0, 0]
    arr[0, 1] = (10, 10, 11)  # diff 31
    a, b = both(Image.fromarray(arr, "RGB"))
    assert np.array_equal(a, b)
    assert a[0, 0, 0] == 255


def test_process_image_bytes_is_the_same_for_both():
    jpeg = images.photo_jpeg(3, size=(160, 90))
    out_t = edges.process_image_bytes(jpeg, "tutorial")
    out_v = edges.process_image_bytes(jpeg, "vectorised")
    assert out_t == out_v


def test_unknown_detector():
    with pytest.raises(ValueError, match="unknown detector"):
        edges.process_image_bytes(images.photo_jpeg(0, size=(16, 9)), "sobel")
