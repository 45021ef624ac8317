"""Images as Darknet's stb_image sees them, and hostile image files refused with ImageError
before they cost memory: EXIF orientation ignored, a pixel cap read from the header before
decoding, truncated or corrupt files refused in every path (load_image, detect, the CLI),
files that are not regular files refused at once, videos cut short reported."""
from __future__ import annotations

import logging
import os
import tracemalloc

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import darknet_py
from darknet_py.cli import main
from darknet_py.errors import ImageError
from darknet_py.image import BYTES_PER_PIXEL, load_image, max_pixels, read_bgr

from conftest import CFG, ROOT
from hostile import (count, encode, exif_oriented_jpeg, jpeg_declaring, make_fifo, no_hang, picture,
                     png_chunk, png_declaring)

SCALE = float(os.environ.get("DARKNET_PY_FUZZ_EXAMPLES", "1"))
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
FORMATS = [".jpg", ".png", ".bmp", ".webp", ".tiff", ".gif", ".ppm"]


def darknet_image(bgr):
    """What Darknet's load_image_color gives for these pixels (RGB, CHW, /255 in double)."""
    return (bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float64) / 255.0).astype(np.float32)


# --- EXIF orientation ------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_ignored_as_darknet_ignores_it(tmp_path, orientation):
    bgr = picture(48, 64)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(exif_oriented_jpeg(bgr, orientation))
    applied = cv2.imread(str(path))  # OpenCV's default applies the tag ...
    assert applied.shape[:2] == ((64, 48) if orientation in (6, 8) else (48, 64))
    unrotated = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    image = load_image(path)  # ... Darknet (stb_image) does not
    assert image.shape == (3, 48, 64)
    assert np.array_equal(image, darknet_image(unrotated))


def test_detect_sees_the_unrotated_image(tmp_path, weights_for):
    """detect() on the path: boxes relative to the stored (unrotated) width and height."""
    net = darknet_py.load(CFG / "yolov3-tiny.cfg", weights_for("yolov3-tiny.cfg", seed=7))
    bgr = cv2.resize(cv2.imread(str(ROOT / "data" / "images" / "dog.jpg")), (160, 120))
    path = tmp_path / "dog6.jpg"
    path.write_bytes(exif_oriented_jpeg(bgr, 6))
    unrotated = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    a = darknet_py.detect(net, path, thresh=0.1)
    b = darknet_py.detect(net, darknet_image(unrotated), thresh=0.1)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)


# --- what Darknet's 3-channel load makes of other pixel formats ---------------------------------

def test_16_bit_grey_and_alpha_pngs_load_as_darknet_loads_them(tmp_path):
    rng = np.random.default_rng(1)
    deep = (rng.random((10, 12, 3)) * 65535).astype(np.uint16)
    grey = (rng.random((10, 12)) * 255).astype(np.uint8)
    grey16 = (rng.random((10, 12)) * 65535).astype(np.uint16)
    alpha = (rng.random((10, 12, 4)) * 255).astype(np.uint8)
    grey_alpha = np.dstack([grey, grey[::-1]])
    cases = {  # stb_image: 16 bits -> the high byte; grey replicated; alpha dropped (not blended)
        "deep.png": (deep, (deep >> 8).astype(np.uint8)),
        "grey.png": (grey, np.dstack([grey] * 3)),
        "grey16.png": (grey16, np.dstack([(grey16 >> 8).astype(np.uint8)] * 3)),
        "alpha.png": (alpha, alpha[:, :, :3]),
    }
    for name, (pixels, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(encode(pixels, ".png"))
        assert np.array_equal(load_image(path), darknet_image(expected)), name
    path = tmp_path / "grey_alpha.png"  # cv2 writes no 2-channel PNG: compose one
    raw = b"".join(b"\x00" + row.tobytes() for row in grey_alpha)
    import struct
    import zlib
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 12, 10, 8, 4, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    assert np.array_equal(load_image(path), darknet_image(np.dstack([grey] * 3)))


# --- the pixel cap ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, kind):
    data = jpeg_declaring(30000, 30000) if kind == "jpeg" else png_declaring(20000, 20000)
    assert len(data) < 1000
    path = tmp_path / f"bomb.{kind}"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError) as e:
            load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(e.value)
    assert str(path) in message and "budget" in message and "DARKNET_PY_MAX_BYTES" in message
    assert ("30000 x 30000" if kind == "jpeg" else "20000 x 20000") in message
    assert peak < 1 << 20


def test_the_pixel_cap_follows_the_memory_budget(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(encode(picture(200, 300), ".png"))
    assert load_image(path).shape == (3, 200, 300)
    monkeypatch.setenv("DARKNET_PY_MAX_BYTES", str(200 * 300 * BYTES_PER_PIXEL - 1))
    assert max_pixels() == 200 * 300 - 1
    with pytest.raises(ImageError, match=r"200 x 300|300 x 200"):
        load_image(path)


@pytest.mark.parametrize("width,height", [(0, 10), (10, 0), (0, 0)])
def test_an_image_of_no_pixels_is_refused(tmp_path, width, height):
    for name, data in (("zero.png", png_declaring(width, height, rows=0)), ("zero.jpg", jpeg_declaring(width, height))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError, match="no pixels") as e:
            load_image(path)
        assert str(path) in str(e.value)


# --- truncated and corrupt files ----------------------------------------------------------------

@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95, 0.999])
def test_a_truncated_image_is_refused(tmp_path, ext, fraction):
    data = encode(picture(40, 50), ext)
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[:max(1, int(len(data) * fraction))])
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_truncated_images_are_refused_in_detection_and_the_cli(tmp_path, weights_for, capsys):
    weights = weights_for("yolov3-tiny.cfg", seed=7)
    net = darknet_py.load(CFG / "yolov3-tiny.cfg", weights)
    data = (ROOT / "data" / "images" / "dog.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) * 6 // 10])
    with pytest.raises(ImageError, match="truncated JPEG"):
        darknet_py.detect(net, cut)
    out = tmp_path / "pred"
    code = main(["detector", "test", str(ROOT / "cfg" / "coco.data"), str(CFG / "yolov3-tiny.cfg"), str(weights),
                 str(cut), "-out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "truncated JPEG" in err and str(cut) in err and "Traceback" not in err
    assert not out.with_suffix(".jpg").exists()
    code = main(["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(weights),
                 "--names", str(ROOT / "data" / "coco.names"), "--out", str(tmp_path / "det"), str(cut)])
    assert code == 1 and "truncated JPEG" in capsys.readouterr().err


def test_empty_and_foreign_files_are_refused(tmp_path):
    cases = {"empty.jpg": b"", "text.jpg": b"this is no jpeg", "half-header.png": b"\x89PNG\r\n\x1a\n\0\0",
             "soi-only.jpg": b"\xff\xd8", "zip.png": b"PK\x03\x04" + b"\0" * 40}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageError) as e:
            load_image(path)
        assert str(path) in str(e.value), name


def test_non_regular_files_are_refused_at_once(tmp_path):
    fifo = make_fifo(tmp_path / "fifo.jpg")
    (tmp_path / "folder.jpg").mkdir()
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    with no_hang(10):
        for path, what in ((fifo, "FIFO"), (tmp_path / "folder.jpg", "directory"), ("/dev/zero", "character device"),
                           (loop, "symbolic links"), (tmp_path / "missing.jpg", "No such file")):
            with pytest.raises(ImageError, match=what) as e:
                load_image(path)
            assert str(path) in str(e.value)


def test_a_file_name_that_is_not_utf8_loads_and_prints(tmp_path, weights_for, capfd):
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: a surrogate escape in Python
    path = tmp_path / name
    path.write_bytes((ROOT / "data" / "images" / "dog.jpg").read_bytes())
    assert load_image(path).shape == (3, 576, 768)
    broken = tmp_path / os.fsdecode(b"cut\xff.jpg")
    broken.write_bytes(b"\xff\xd8\xff\xda")
    code = main(["detect", "--cfg", str(CFG / "yolov3-tiny.cfg"), "--weights", str(weights_for("yolov3-tiny.cfg", seed=7)),
                 "--names", str(ROOT / "data" / "coco.names"), "--out", str(tmp_path / "det"), str(broken)])
    err = capfd.readouterr().err
    assert code == 1 and "cut\\udcff.jpg" in err and "Traceback" not in err


@st.composite
def mutated_image(draw):
    ext = draw(st.sampled_from(FORMATS))
    data = bytearray(encode(picture(24, 32, seed=draw(st.integers(0, 3))), ext))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
        if kind == "flip" and data:
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[draw(st.integers(0, len(data))):]
        elif kind == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif len(data) > 32:  # overwrite a header byte, where sizes live
            data[draw(st.integers(0, 31))] = draw(st.integers(0, 255))
    return ext, bytes(data)


def test_fuzz_image_files(tmp_path):
    """Mutated files of every format either load as a (3, h, w) float32 image in [0, 1] or are
    refused with ImageError naming the file; never another exception, a hang or a huge allocation."""
    @settings(FUZZ, max_examples=max(1, int(300 * SCALE)))
    @given(mutated_image())
    def run(case):
        ext, data = case
        path = tmp_path / f"fuzzed{ext}"
        path.write_bytes(data)
        count("image files", "tried")
        with no_hang(10):
            try:
                image = load_image(path)
            except ImageError as e:
                assert str(path) in str(e)
                count("image files", "refused")
                return
        assert image.dtype == np.float32 and image.ndim == 3 and image.shape[0] == 3
        assert image.size and 0.0 <= image.min() and image.max() <= 1.0
        count("image files", "loaded")

    run()


# --- videos -------------------------------------------------------------------------------------

def test_a_video_cut_short_is_reported_with_frames_read_and_declared(tmp_path, caplog):
    from darknet_py.video import frames
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        writer.write(picture(48, 64, seed=i))
    writer.release()
    assert sum(1 for _ in frames(video)) == 30
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[:len(data) * 6 // 10])
    with caplog.at_level(logging.WARNING):
        read = sum(1 for _ in frames(cut))
    assert 0 < read < 30
    assert f"ends after {read} of its 30 declared frames" in caplog.text and str(cut) in caplog.text
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(data[:100])
    with pytest.raises(ImageError, match="empty.mp4"):
        list(frames(empty))
    with no_hang(10), pytest.raises(ImageError, match="FIFO"):
        list(frames(make_fifo(tmp_path / "fifo.avi")))


def test_read_bgr_returns_three_channel_bytes(tmp_path):
    path = tmp_path / "p.bmp"
    path.write_bytes(encode(picture(), ".bmp"))
    bgr = read_bgr(path)
    assert bgr.dtype == np.uint8 and bgr.shape == (48, 64, 3)
