"""JPEG reading on files as real cameras write them (bytes after the end marker, EXIF, grayscale night
frames, odd sizes, progressive, restart markers, rotation tags) and on damaged ones: each decodes exactly
as OpenCV would, or fails with a counted reason."""
import time

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from data.images import ImageError, JpegPolicy, jpeg_size, read_image, reduction_for
from tests.helpers import camera_jpeg, corrupt_body, with_header_size

SCENE = cv2.cvtColor(skimage_data.chelsea(), cv2.COLOR_RGB2BGR)  # 451 x 300: odd sizes on purpose


def opencv(data: bytes, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), flag)


@pytest.mark.parametrize("variant", [
    dict(trailer=b"RECONYX\x00\x00\x00\x00 "), dict(trailer=b"\x00" * 4096), dict(trailer=b" "),
    dict(progressive=True, trailer=b"\xff\xff"), dict(restart_rows=4), dict(orientation=1)])
@pytest.mark.parametrize("reduction, flag", [(1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2),
                                             (4, cv2.IMREAD_REDUCED_COLOR_4)])
def test_real_camera_files_decode_fully_and_as_opencv_does(tmp_path, variant, reduction, flag):
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(camera_jpeg(SCENE, **variant))
    decoded = read_image(path, reduction)
    np.testing.assert_array_equal(decoded.image, opencv(path.read_bytes(), flag))
    assert (decoded.width, decoded.height, decoded.problem) == (451, 300, None)


def test_grayscale_night_frame_decodes_to_three_equal_channels(tmp_path):
    path = tmp_path / "night.jpg"
    path.write_bytes(camera_jpeg(cv2.cvtColor(SCENE, cv2.COLOR_BGR2GRAY), trailer=b"IR"))
    image = read_image(path, 2).image
    assert image.shape == (150, 226, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_rotation_tag_turns_the_image_upright_as_opencv_does(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(camera_jpeg(SCENE, orientation=6))
    decoded = read_image(path, lambda w, h: reduction_for(w, h, 100))
    assert (decoded.width, decoded.height) == (300, 451) == jpeg_size(path)
    np.testing.assert_array_equal(decoded.image, opencv(path.read_bytes(), cv2.IMREAD_REDUCED_COLOR_2))


def test_reduction_is_chosen_from_the_header_size(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(camera_jpeg(cv2.resize(SCENE, (1920, 1080))))
    seen = []
    image = read_image(path, lambda w, h: seen.append((w, h)) or reduction_for(w, h, 224)).image
    assert seen == [(1920, 1080)] and image.shape == (270, 480, 3)


@pytest.mark.parametrize("width, height, target, factor", [
    (1920, 1080, 224, 4), (2048, 1536, 224, 4), (640, 360, 224, 1), (1920, 1080, 100, 8), (100, 100, 224, 1)])
def test_reduction_keeps_short_side_above_target(width, height, target, factor):
    assert reduction_for(width, height, target) == factor


def test_missing_end_marker_alone_still_decodes_fully(tmp_path):
    data = camera_jpeg(SCENE)
    path = tmp_path / "x.jpg"
    path.write_bytes(data[:-2])
    np.testing.assert_array_equal(read_image(path).image, opencv(data))


@pytest.mark.parametrize("keep", [0.2, 0.6, 0.95])
@pytest.mark.parametrize("progressive", [False, True])
def test_a_cut_file_that_still_ends_in_an_end_marker_is_refused(tmp_path, keep, progressive):
    """The old test (last two bytes FF D9) passed these; libjpeg sees the scan data end early."""
    data = camera_jpeg(SCENE, progressive=progressive)
    path = tmp_path / "x.jpg"
    path.write_bytes(data[:int(len(data) * keep)] + b"\xff\xd9")
    with pytest.raises(ImageError) as e:
        read_image(path)
    assert e.value.reason == "JPEG decoded with errors"


def test_plainly_truncated_file_is_counted_as_truncated(tmp_path):
    data = camera_jpeg(SCENE)
    path = tmp_path / "x.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as e:
        read_image(path, policy=JpegPolicy(keep_decoded_with_errors=True))
    assert e.value.reason == "truncated JPEG (the image data ends early)"


def test_corrupt_body_with_intact_markers_is_skipped_or_kept_by_policy(tmp_path):
    good = camera_jpeg(SCENE)
    path = tmp_path / "x.jpg"
    path.write_bytes(corrupt_body(good))
    assert opencv(path.read_bytes()) is not None  # OpenCV returns garbage without a word
    with pytest.raises(ImageError) as e:
        read_image(path)
    assert e.value.reason == "JPEG decoded with errors" and str(path) in str(e.value)
    kept = read_image(path, policy=JpegPolicy(keep_decoded_with_errors=True))
    assert kept.image.shape == (300, 451, 3) and kept.problem.startswith("JPEG decoded with errors, kept")


def test_header_claiming_a_huge_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(with_header_size(camera_jpeg(SCENE), 65000, 65000))
    started = time.perf_counter()
    with pytest.raises(ImageError) as e:
        read_image(path)
    assert e.value.reason == "JPEG header size over jpeg.max_megapixels" and "65000x65000" in str(e.value)
    assert time.perf_counter() - started < 1  # nothing was decoded: 4.2 G pixels would take minutes and 12 GB


def test_header_inconsistent_with_metadata_is_refused_but_a_resized_copy_is_not(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(with_header_size(camera_jpeg(cv2.resize(SCENE, (640, 360))), 640, 3600))
    with pytest.raises(ImageError) as e:
        read_image(path, expected=(640, 360))
    assert e.value.reason == "JPEG header size does not fit the metadata's width/height"
    path.write_bytes(camera_jpeg(cv2.resize(SCENE, (640, 360))))
    assert read_image(path, expected=(1920, 1080)).image.shape == (360, 640, 3)  # a copy resized by 1/3
    assert read_image(path, expected=(360, 640)).image.shape == (360, 640, 3)    # the other orientation
    assert read_image(path, expected=(np.nan, np.nan)).image.shape == (360, 640, 3)


def test_missing_and_non_jpeg_files_are_image_errors(tmp_path):
    with pytest.raises(ImageError, match="missing"):
        read_image(tmp_path / "nope.jpg")
    png = tmp_path / "x.jpg"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ImageError, match="not a JPEG"):
        read_image(png)
    with pytest.raises(ImageError, match="not a JPEG"):
        jpeg_size(png)


def test_jpeg_size_reads_the_header_only(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(camera_jpeg(cv2.resize(SCENE, (2048, 1536)), trailer=b"x" * 100))
    assert jpeg_size(path) == (2048, 1536)
    path.write_bytes(camera_jpeg(SCENE)[:2000])  # the header survives a cut through the body
    assert jpeg_size(path) == (451, 300)
