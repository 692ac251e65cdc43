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


@pytest.mark.parametrize("backdrop", ["studio", "dark", "white", "spotlight", "cloth"])
def test_separation_finds_the_figure_on_every_kind_of_backdrop(backdrop):
    """Issue 25: generated photographs with known silhouettes (sources and locally made figurines, 64 px):
    intersection-over-union at least 0.9, and no rim of the old backdrop left around the figure."""
    from scipy import ndimage

    from core.demo import SOURCES, photograph

    ious = []
    for j in range(12):
        img, truth = photograph(SOURCES[j % 3], np.random.default_rng(j), 64, "demo" if j % 4 == 3 else "none",
                                backdrop=backdrop)
        a = np.asarray(img)
        fig = images.figure_mask(a)
        assert fig is not None
        ious.append((fig & truth).sum() / (fig | truth).sum())
        out = images.separate_background(a)
        # outside the figure (and the pixel around it where the photograph blends the two): neutral grey only
        outside = ~ndimage.binary_dilation(truth)
        assert (np.abs(out[outside & ~fig].astype(int) - images.NEUTRAL).max() == 0)
        # the figure's outermost pixels take the colour of the figure inside, not of the backdrop
        edge = fig & ~ndimage.binary_erosion(fig)
        inner = ndimage.binary_erosion(truth, iterations=2)
        backdrop_tone = np.median(a[outside], axis=0)
        figure_tone = np.median(a[inner], axis=0)
        assert np.linalg.norm(np.median(out[edge], axis=0) - figure_tone) < np.linalg.norm(
            np.median(out[edge], axis=0) - backdrop_tone)
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.8, ious


@pytest.mark.parametrize("backdrop", ["studio", "dark", "cloth"])
def test_a_tall_narrow_photograph_is_cut_from_its_backdrop_too(backdrop, tmp_path):
    """A figurine photographed tall and narrow (90 x 400) is a strip 14 px across at 64 px, under `MIN_ACROSS`:
    it is cut at `CUT_ACROSS` px across and the mask brought back, not left on its backdrop."""
    from PIL import Image

    from core.demo import photograph

    ious = []
    for j in range(6):
        img, truth = photograph("Achaemenid", np.random.default_rng(j), 128, backdrop=backdrop)
        strip = img.resize((28, 128), Image.Resampling.LANCZOS)
        fig = images.figure_mask(np.asarray(strip.resize((14, 64), Image.Resampling.LANCZOS)))
        known = np.asarray(Image.fromarray(truth).resize((14, 64), Image.Resampling.BILINEAR))
        assert fig is not None and fig.shape == (64, 14)
        ious.append((fig & known).sum() / (fig | known).sum())
        strip.resize((90, 400)).save(tmp_path / "tall.png")
        a = decode(str(tmp_path / "tall.png"), 64, "separate")
        assert (a[:, :20] == images.NEUTRAL).all() and (a[:2] == images.NEUTRAL).all()  # padding and backdrop: grey
    assert np.mean(ious) >= 0.8, ious


def test_separation_keeps_a_photo_without_a_figure():
    plain = np.full((64, 64, 3), 200, np.uint8)
    assert images.separate_background(plain) is plain and images.figure_mask(plain) is None
    small = np.full((8, 8, 3), 90, np.uint8)
    assert images.separate_background(small) is small


def test_a_separated_dataset_decodes_on_grey(tmp_path):
    from core.demo import BACKDROPS, photograph

    for i, kind in enumerate(BACKDROPS):
        photograph("Achaemenid", np.random.default_rng(i), 96, backdrop=kind)[0].save(tmp_path / f"{kind}.jpg")
    for kind in BACKDROPS:
        a = decode(str(tmp_path / f"{kind}.jpg"), 48, "separate")
        corners = np.concatenate([a[:3, :3], a[-3:, -3:]]).reshape(-1, 3)
        assert a.shape == (48, 48, 3) and (np.abs(corners.astype(int) - 128).max() <= 0), kind


def test_a_kept_backdrop_is_told_from_a_replaced_one():
    """`backdrop_kept`: a border of neutral grey (cut or flattened) is a replaced backdrop; any other, kept."""
    cut = np.full((4, 16, 16, 3), images.NEUTRAL, np.uint8)
    cut[:, 4:12, 6:10] = (150, 60, 40)                  # a figure on grey
    cut[1, :, 0] = (129, 127, 130)                      # a flattened backdrop's soft grey
    cut[2] = (60, 120, 60)                              # a green cloth, kept
    cut[3, :, :2] = (20, 20, 20)                        # a quarter of the border dark: kept
    assert images.backdrop_kept(cut, chunk=3).tolist() == [False, False, True, True]
