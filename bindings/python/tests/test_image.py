"""Images: pixel formats, planes, import from plane fds."""

import os

import pytest

import tensorbuf

np = pytest.importorskip("numpy")


def test_pixel_format_names():
    assert {"rgb", "rgba", "nv12", "grey"} <= set(tensorbuf.PIXEL_FORMATS)


def test_new_image_and_planes():
    img = tensorbuf.image(16, 8, "nv12", memory="heap", name="cam")
    assert img.pixel_format == "nv12" and (img.width, img.height) == (16, 8)
    assert img.shape == (12, 16) and img.plane_count == 2
    assert "pixel_format='nv12'" in repr(img)
    luma, chroma = img.plane(0), img.plane(1)
    assert luma.shape == (8, 16) and chroma.shape == (4, 8, 2)
    assert luma.pixel_format is None and chroma.name == "cam"
    offset, stride, buffer_id = img.plane_layout(1)
    assert offset == 8 * stride and buffer_id == img.buffer_id
    np.asarray(chroma)[...] = 128
    assert img[8, 0] == 128 and img[7, 0] == 0
    rgba = tensorbuf.image(4, 2)
    assert rgba.shape == (2, 4, 4) and rgba.dtype == "u8"
    with pytest.raises(tensorbuf.OutOfRangeError):
        img.plane(2)
    with pytest.raises(tensorbuf.InvalidArgumentError):
        tensorbuf.image(4, 4, "no-such-format")
    with pytest.raises(tensorbuf.ShapeError):
        tensorbuf.image(0, 4)


def test_set_pixel_format():
    t = tensorbuf.Tensor((2, 3, 4), "u8")
    t.pixel_format = "rgba"
    assert (t.width, t.height, t.plane_count) == (3, 2, 1)
    t.pixel_format = None
    assert t.pixel_format is None and t.width == 0
    with pytest.raises(tensorbuf.ShapeError):
        t.pixel_format = "rgb"


def test_import_image_from_plane_fds(shm):
    img = tensorbuf.image(8, 4, "nv12", memory=shm)
    img[5, 3] = 9
    fd = img.export_plane_fd(0)
    try:
        planes = [(fd,) + img.plane_layout(i)[:2] for i in range(img.plane_count)]
        same = tensorbuf.import_image(8, 4, "nv12", planes)
    finally:
        os.close(fd)
    assert same.pixel_format == "nv12" and same[5, 3] == 9
    with pytest.raises(tensorbuf.UnsupportedError):
        tensorbuf.image(8, 4, "nv12", memory="heap").export_plane_fd(0)


def test_image_with_planes_at_given_offsets_and_pitches():
    img = tensorbuf.image(100, 10, "nv12", planes=[(0, 128), (4096, 128)],
                          memory="heap")
    assert img.plane_layout(1)[:2] == (4096, 128)
    assert img.shape == (10, 100) and img.strides == (128, 1)  # plane 0 alone
    assert img.buffer.size == 4096 + 5 * 128
    np.asarray(img.plane(1))[...] = 7
    assert not np.asarray(img).any()
    wide = tensorbuf.image(1000, 3, "rgba", planes=[(0, 4096)])
    assert wide.shape == (3, 1000, 4) and wide.strides[0] == 4096
    with pytest.raises(tensorbuf.LayoutError, match=r"strides\[1\]"):
        tensorbuf.image(100, 10, "nv12", planes=[(0, 128), (4096, 99)])
    with pytest.raises(tensorbuf.LayoutError, match=r"offsets\[1\]"):
        tensorbuf.image(100, 10, "nv12", planes=[(0, 128), (512, 128)])
    with pytest.raises(tensorbuf.InvalidArgumentError, match="nplanes"):
        tensorbuf.image(100, 10, "nv12", planes=[(0, 128)])
    with pytest.raises(tensorbuf.OutOfRangeError):
        tensorbuf.image(100, 10, "nv12", planes=[(0, 128), (2**64 - 64, 128)])
