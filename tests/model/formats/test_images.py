import cv2
import numpy as np
import pytest

from model.formats.images import ImageDecodeError, decode_image, read_image, to_rgb8

from tests.model.conftest import SAMPLE_IMAGE


def encode(array: np.ndarray, ext: str) -> bytes:
    ok, buffer = cv2.imencode(ext, array)
    assert ok
    return buffer.tobytes()


@pytest.fixture
def bgr() -> np.ndarray:
    image = np.zeros((12, 20, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 100, 200  # B, G, R
    return image


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff"])
def test_lossless_formats_decode_to_rgb(bgr, ext):
    rgb = decode_image(encode(bgr, ext))
    assert rgb.shape == (12, 20, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (200, 100, 10)


def test_jpeg(bgr):
    rgb = decode_image(encode(bgr, ".jpg"))
    assert np.abs(rgb[5, 5].astype(int) - (200, 100, 10)).max() < 8


def test_grey_rgba_and_16_bit(bgr):
    grey = decode_image(encode(np.full((4, 5), 77, np.uint8), ".png"))
    assert grey.shape == (4, 5, 3) and (grey == 77).all()
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 9, np.uint8)])
    assert tuple(decode_image(encode(bgra, ".png"))[0, 0]) == (200, 100, 10)
    deep = decode_image(encode(np.full((4, 5, 3), 65535, np.uint16), ".png"))
    assert deep.dtype == np.uint8 and (deep == 255).all()


def test_float_and_odd_layouts():
    assert (to_rgb8(np.ones((2, 2), np.float32)) == 255).all()
    assert to_rgb8(np.zeros((2, 2, 1), np.uint8)).shape == (2, 2, 3)
    with pytest.raises(ImageDecodeError):
        to_rgb8(np.zeros((2, 2), np.int32))
    with pytest.raises(ImageDecodeError):
        to_rgb8(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_is_a_decode_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_truncated_jpeg_is_a_decode_error(bgr):
    data = encode(np.tile(bgr, (20, 20, 1)), ".jpg")
    with pytest.raises(ImageDecodeError):
        decode_image(data[:20])


def test_read_image(tmp_path):
    assert read_image(SAMPLE_IMAGE).shape == (2848, 4288, 3)
    with pytest.raises(ImageDecodeError, match="cannot read"):
        read_image(tmp_path / "absent.jpg")
