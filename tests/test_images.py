"""The image reader on real files written here: EXIF orientations, bit depths, colour modes, broken files."""

import cv2
import numpy as np
import pytest
from PIL import Image

from recipe.data.images import ImageError, _decode, _read_with_pil, image_size, read_image

# Display image from the stored pixels for each EXIF orientation (EXIF 2.32, tag 0x0112), written with numpy
# so the oracle does not share code with PIL's or torchvision's implementation.
DISPLAY = {
    1: lambda s: s,
    2: lambda s: s[:, ::-1],
    3: lambda s: s[::-1, ::-1],
    4: lambda s: s[::-1],
    5: lambda s: s.transpose(1, 0, 2),
    6: lambda s: np.rot90(s, -1),  # stored row 0 is the visual right side
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2),
    8: lambda s: np.rot90(s, 1),  # stored row 0 is the visual left side
}


def _marked(height=48, width=80):
    """Grey image with a red block at the stored top-left and a green one at the top-right."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[:16, :16] = (255, 0, 0)
    image[:16, -16:] = (0, 255, 0)
    return image


def _save_with_orientation(path, pixels, orientation, **save_args):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **save_args)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(tmp_path, orientation):
    path = str(tmp_path / f"o{orientation}.jpg")
    _save_with_orientation(path, _marked(), orientation, quality=95)
    with Image.open(path) as im:
        stored = np.array(im.convert("RGB"))  # PIL ignores EXIF unless asked: the stored pixels
    expected = DISPLAY[orientation](stored)
    image = read_image(path)
    assert image.shape == expected.shape and image.dtype == np.uint8
    assert image.flags.writeable and image.flags.c_contiguous
    assert np.abs(image.astype(int) - expected).max() <= 2  # libjpeg-turbo in both; measured 0 here
    assert np.abs(_read_with_pil(path).astype(int) - expected).max() <= 2
    assert image_size(path) == (expected.shape[1], expected.shape[0])
    # The red block is where the display transform puts it (a sanity check of the oracle itself).
    red = (image[..., 0] > 200) & (image[..., 1] < 60)
    stored_red = np.zeros((48, 80, 1), bool)
    stored_red[:16, :16] = True
    assert (red == DISPLAY[orientation](stored_red)[..., 0]).mean() > 0.99


def test_fast_path_is_torchvision_and_equals_public_api(tmp_path):
    import torch
    from torchvision.io import ImageReadMode, decode_image

    path = str(tmp_path / "o6.jpg")
    _save_with_orientation(path, _marked(), 6, quality=90)
    data = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.uint8)  # noqa: SIM115
    with pytest.warns(DeprecationWarning):  # the reason _decode calls the op directly  # noqa: PT030
        public = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    assert torch.equal(_decode(data), public)
    assert np.array_equal(read_image(path), public.permute(1, 2, 0).numpy())


def test_exif_orientation_png(tmp_path):
    path = str(tmp_path / "o6.png")
    stored = _marked()
    _save_with_orientation(path, stored, 6)
    assert np.array_equal(read_image(path), np.rot90(stored, -1))
    assert image_size(path) == (48, 80)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    path = str(tmp_path / "gray16.png")
    Image.fromarray(ramp).save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (32, 64, 3)
    assert np.array_equal(image, np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, axis=2))
    assert np.array_equal(_read_with_pil(path), image)

    rgb16 = np.random.default_rng(0).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    path = str(tmp_path / "rgb16.png")
    cv2.imwrite(path, rgb16[..., ::-1])  # PIL cannot write 48-bit PNGs; OpenCV stores BGR
    assert np.array_equal(read_image(path), (rgb16 >> 8).astype(np.uint8))
    assert np.array_equal(_read_with_pil(path), read_image(path))


def test_wide_tiffs_via_pil(tmp_path):
    ramp16 = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)
    Image.fromarray(ramp16).save(tmp_path / "i16.tif")
    assert np.array_equal(read_image(str(tmp_path / "i16.tif"))[..., 0], (ramp16 >> 8).astype(np.uint8))

    unit = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    Image.fromarray(unit, mode="F").save(tmp_path / "f.tif")
    assert np.array_equal(read_image(str(tmp_path / "f.tif"))[..., 1], np.round(unit * 255.0).astype(np.uint8))

    wide = (np.arange(100, dtype=np.int32).reshape(10, 10) * 1_000_000)  # beyond 16 bit: stretched min..max
    Image.fromarray(wide, mode="I").save(tmp_path / "i32.tif")
    out = read_image(str(tmp_path / "i32.tif"))[..., 2]
    assert out[0, 0] == 0 and out[-1, -1] == 255 and np.array_equal(out, np.round(wide / wide.max() * 255))


def test_cmyk_jpeg(tmp_path):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16], rgb[:, 16:32, 1], rgb[:, 32:] = (200, 40, 40), 180, (30, 60, 220)
    path = str(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        pil = np.array(im.convert("RGB")).astype(int)
    image = read_image(path)
    assert np.abs(image.astype(int) - pil).max() <= 2
    assert np.abs(image.astype(int) - rgb).mean() < 4  # the colours survive the round trip (lossy JPEG)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "1"])
def test_png_modes_match_pil_convert(tmp_path, mode):
    rgba = np.random.default_rng(1).integers(0, 256, (24, 36, 4), dtype=np.uint8)
    im = Image.fromarray(rgba, mode="RGBA")
    im = im if mode == "RGBA" else im.convert(mode)
    path = str(tmp_path / f"{mode}.png")
    im.save(path)
    with Image.open(path) as reopened:
        expected = np.array(reopened.convert("RGB"))
    assert np.array_equal(read_image(path), expected)
    if mode == "RGBA":
        assert np.array_equal(expected, rgba[..., :3])  # alpha dropped, colour untouched


def test_other_formats_go_through_pil(tmp_path):
    pixels = _marked(20, 30)
    Image.fromarray(pixels).save(tmp_path / "a.bmp")
    assert np.array_equal(read_image(str(tmp_path / "a.bmp")), pixels)
    assert image_size(str(tmp_path / "a.bmp")) == (30, 20)


def _one_line_error(path, *fragments):
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path)
    for fragment in fragments:
        assert fragment in message
    assert isinstance(info.value, ValueError)
    return message


def test_broken_files_are_one_line_errors(tmp_path):
    Image.fromarray(_marked()).save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    _one_line_error(str(tmp_path / "trunc.jpg"), "truncated")
    Image.fromarray(_marked()).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    _one_line_error(str(tmp_path / "trunc.png"), "cannot decode")
    (tmp_path / "zero.jpg").write_bytes(b"")
    _one_line_error(str(tmp_path / "zero.jpg"), "empty (0 bytes)")
    (tmp_path / "notes.jpg").write_text("not an image\n")
    _one_line_error(str(tmp_path / "notes.jpg"), "not an image")
    _one_line_error(str(tmp_path / "missing.jpg"), "not found")
    for name, fragment in (("zero.jpg", "empty"), ("notes.jpg", "not a readable image"), ("missing.jpg", "not found")):
        with pytest.raises(ImageError, match=fragment):
            image_size(str(tmp_path / name))


def test_channel_first_reader_equals_read_image(tmp_path):
    """`read_image_chw` (training's reader: the decoder's own layout) is `read_image` channel-first, for an
    EXIF-rotated JPEG, a 48-bit PNG, a gray PNG and a format only PIL reads."""
    import torch

    from recipe.data.images import read_image_chw

    _save_with_orientation(str(tmp_path / "r.jpg"), _marked(), 6, quality=95)
    cv2.imwrite(str(tmp_path / "rgb16.png"), np.random.default_rng(0).integers(0, 65536, (20, 30, 3), dtype=np.uint16))
    Image.fromarray(_marked()[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(_marked(20, 30)).save(tmp_path / "a.bmp")
    for name in ("r.jpg", "rgb16.png", "gray.png", "a.bmp"):
        path = str(tmp_path / name)
        chw = read_image_chw(path)
        assert chw.dtype == torch.uint8 and chw.shape[0] == 3  # a rotated JPEG comes as a strided view
        assert np.array_equal(chw.permute(1, 2, 0).numpy(), read_image(path)), name
    assert read_image_chw(str(tmp_path / "r.jpg")).shape == (3, 80, 48)  # orientation 6: rotated
