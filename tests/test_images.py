import numpy as np
import pytest
from PIL import Image

from core import images
from core.images import UnreadableImage, decode, is_image_name
from tests.corpus import UNREADABLE, figure


def test_junk_and_extensions():
    assert is_image_name("a.JPG") and is_image_name("b.tiff") and is_image_name("c.WebP")
    assert not is_image_name(".DS_Store") and not is_image_name("._a.jpg") and not is_image_name("Thumbs.db")
    assert not is_image_name("notes.txt")


@pytest.mark.parametrize("name", ["plain.jpg", "UPPER.JPG", "cmyk.jpg", "palette.png", "rgba.png", "la.png",
                                  "photo.webp", "gray16.tif", "float.TIFF", "one.png", "tall.png", "rotated.jpg"])
def test_readable_kinds_decode_to_square_rgb(messy, name):
    a = decode(str(messy / "Greek" / name), 32)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8


@pytest.mark.parametrize("rel,reason", UNREADABLE.items())
def test_unreadable_kinds_give_a_reason(messy, rel, reason):
    with pytest.raises(UnreadableImage) as e:
        decode(str(messy / rel), 32)
    assert reason in str(e.value) and str(e.value)


def test_high_bit_depth_is_rescaled_by_its_range_not_clipped(messy):
    a16 = decode(str(messy / "Greek" / "gray16.tif"), 64)  # values 1000..3000 -> full 0..255 range
    assert a16.min() <= 2 and a16.max() >= 253
    af = decode(str(messy / "Greek" / "float.TIFF"), 64)  # values -1..1
    assert af.min() <= 2 and af.max() >= 253


def test_tall_image_keeps_aspect_and_pads_with_border_colour(tmp_path):
    a = np.full((200, 20, 3), (30, 40, 200), np.uint8)  # blue background
    a[50:150, 5:15] = (200, 50, 50)
    Image.fromarray(a).save(tmp_path / "tall.png")
    out = decode(str(tmp_path / "tall.png"), 100)
    assert tuple(out[50, 0]) == (30, 40, 200)  # padding is the border colour, not black
    red = np.all(np.abs(out.astype(int) - (200, 50, 50)) < 30, axis=2)
    rows, cols = np.nonzero(red)
    assert rows.max() - rows.min() >= 45 and cols.max() - cols.min() <= 7  # not stretched sideways


def test_exif_rotation_is_applied(messy):
    # the stored image is 80 wide x 40 high with orientation 6: shown, it is tall; the figure block is
    # upright, so in the decoded square the content occupies a tall, narrow area
    out = decode(str(messy / "Greek" / "rotated.jpg"), 80)
    dark = out.mean(axis=2) < 180
    rows, cols = np.nonzero(dark)
    assert (rows.max() - rows.min()) > (cols.max() - cols.min())


def test_alpha_goes_on_white(tmp_path):
    im = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    im.save(tmp_path / "clear.png")
    assert decode(str(tmp_path / "clear.png"), 16).min() == 255


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    figure(200, 200).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    with pytest.raises(UnreadableImage, match="decompression bomb"):
        decode(str(tmp_path / "big.png"), 32)


def test_huge_jpeg_decodes_at_reduced_scale(tmp_path):
    figure(4000, 3000).save(tmp_path / "huge.jpg", quality=80)
    assert decode(str(tmp_path / "huge.jpg"), 64).shape == (64, 64, 3)


def test_flatten_replaces_a_gradient_background_and_keeps_the_figure():
    h = w = 64
    grad = np.linspace(160, 230, h)[:, None, None] * np.ones((h, w, 3))
    a = grad.copy()
    a[16:48, 24:40] = (150, 60, 40)
    out = images.flatten_background(a.astype(np.uint8))
    assert np.abs(out[2, 2].astype(int) - 128).max() <= 2 and np.abs(out[60, 60].astype(int) - 128).max() <= 2
    assert np.abs(out[32, 32].astype(int) - (150, 60, 40)).max() <= 2


def test_flatten_keeps_a_photo_without_a_clear_background():
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert images.flatten_background(busy) is busy
    plain = np.full((64, 64, 3), 200, np.uint8)
    assert images.flatten_background(plain) is plain
