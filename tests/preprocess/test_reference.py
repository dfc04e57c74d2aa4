"""The NumPy twins (the C core's future oracle) against OpenCV and Pillow themselves."""

from __future__ import annotations

import numpy as np
import pytest

from deploykit.preprocess.reference import resize_cv2, resize_pil

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (dev extra) is the oracle")
Image = pytest.importorskip("PIL.Image", reason="Pillow (dev extra) is the oracle")


def _sizes(seed: int, n: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    fixed = [(1, 1, 5, 5), (1, 7, 3, 9), (2, 2, 1, 1), (5, 7, 3, 2), (64, 64, 32, 32),
             (480, 640, 224, 224), (100, 100, 640, 640), (1080, 1920, 360, 640), (37, 53, 91, 17)]
    return fixed + [tuple(int(v) for v in rng.integers(1, 160, 4)) for _ in range(n)]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_resize_cv2_is_bit_exact(channels: int) -> None:
    rng = np.random.default_rng(channels)
    for h, w, dh, dw in _sizes(channels, 60):
        shape = (h, w) if channels == 1 else (h, w, channels)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        want = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(resize_cv2(img, dh, dw), want, err_msg=str((h, w, dh, dw)))


def test_resize_cv2_on_a_real_photo(photo: np.ndarray) -> None:
    for dh, dw in ((640, 640), (213, 320), (1000, 1500)):
        want = cv2.resize(photo, (dw, dh), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(resize_cv2(photo, dh, dw), want)


@pytest.mark.parametrize("channels", [1, 3])
def test_resize_pil_within_one_level(channels: int) -> None:
    rng = np.random.default_rng(10 + channels)
    exact = total = 0
    for h, w, dh, dw in _sizes(10 + channels, 40):
        shape = (h, w) if channels == 1 else (h, w, channels)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        want = np.asarray(Image.fromarray(img).resize((dw, dh), Image.BILINEAR))
        got = resize_pil(img, dh, dw)
        assert got.shape == want.shape
        assert int(np.abs(got.astype(int) - want).max()) <= 1, (h, w, dh, dw)
        exact += int(np.array_equal(got, want))
        total += 1
    assert exact >= total // 2  # most cases are bit-exact; the rest differ by one level


def test_resize_pil_1d_passes_are_exact() -> None:
    rng = np.random.default_rng(3)
    for h, w, dh, dw in _sizes(3, 40):
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        for size in ((w, dh), (dw, h)):  # one axis at a time
            want = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR))
            np.testing.assert_array_equal(resize_pil(img, size[1], size[0]), want)


def test_twins_reject_what_they_do_not_handle() -> None:
    with pytest.raises(ValueError, match="expected a uint8"):
        resize_cv2(np.zeros((4, 4), np.float32), 2, 2)
    with pytest.raises(ValueError, match="expected a uint8"):
        resize_pil(np.zeros((4,), np.uint8), 2, 2)
