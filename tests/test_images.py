"""JPEG reading: reduced decode, and clear errors for missing, truncated or non-JPEG files."""
import pytest

from data import ImageError, read_image, reduction_for


def a_jpeg(root):
    return sorted((root / "train").glob("*.jpg"))[0]


def test_reduced_decode_divides_each_side(root):
    path = a_jpeg(root)
    full, half = read_image(path), read_image(path, 2)
    assert full.shape == (96, 160, 3)
    assert half.shape == (48, 80, 3)


@pytest.mark.parametrize("width, height, target, factor", [
    (1920, 1080, 224, 4), (2048, 1536, 224, 4), (640, 360, 224, 1), (1920, 1080, 100, 8), (100, 100, 224, 1)])
def test_reduction_keeps_short_side_above_target(width, height, target, factor):
    assert reduction_for(width, height, target) == factor


def test_truncated_jpeg_is_an_image_error(root):
    path = a_jpeg(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_image(path)


def test_missing_and_non_jpeg_files_are_image_errors(root, tmp_path):
    with pytest.raises(ImageError, match="missing"):
        read_image(tmp_path / "nope.jpg")
    png = tmp_path / "x.jpg"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ImageError, match="not a JPEG"):
        read_image(png)
