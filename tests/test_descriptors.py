"""The descriptor stage: HOG as scikit-image computes it, the pixels, a backbone from a weights file, the cache."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from skimage.color import rgb2gray
from skimage.feature import hog

from core import descriptors
from core.dataset import load
from core.descriptors import Descriptor, describe
from core.errors import UserError

ROOT = Path(os.environ["FIGURINES_DATA"])  # inside the data roots the tests run with


def test_hog_is_scikit_images_on_the_grey_image():
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    got = descriptors.hog(images, Descriptor(image_size=32))
    for im, row in zip(images, got):
        want = hog(rgb2gray(im), orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), feature_vector=True)
        np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (3, 7 * 7 * 2 * 2 * 9)  # 8 x 8 cells whatever the image size


def test_descriptors_are_cached_per_dataset_and_the_same_in_parallel(small_demo, monkeypatch):
    ds = load(small_demo, 32)
    first = describe(ds, Descriptor(image_size=32), workers=2)
    assert first.shape[0] == len(ds.items) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, descriptors.compute(ds, Descriptor(image_size=32), workers=1))
    pixels = describe(ds, Descriptor("pixels", 32))  # the decoded images themselves, in [0, 1]: not cached
    assert pixels.shape == (len(ds.items), 32 * 32 * 3) and 0 <= pixels.min() and pixels.max() <= 1
    monkeypatch.setattr(descriptors, "compute", lambda *a, **k: pytest.fail("computed again, not read from the cache"))
    np.testing.assert_array_equal(describe(ds, Descriptor(image_size=32)), first)


def test_a_backbone_loads_from_a_random_weight_file(small_demo, tmp_path):
    ROOT.mkdir(parents=True, exist_ok=True)
    weights = ROOT / "random-resnet50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    d = descriptors.resolved(Descriptor("backbone", 32, weights=str(weights)))
    assert len(d.weights_sha256) == 64 and "resnet50" in d.name and d.weights_sha256[:12] in d.name
    images = load(small_demo, 32).images[:4]
    x = descriptors.backbone(images, d)
    assert x.shape == (4, 2048) and np.isfinite(x).all()


@pytest.mark.parametrize("make, says", [
    (lambda p: None, "weights file not found"),
    (lambda p: p.write_text("not a checkpoint"), "is not a PyTorch weights file"),
    (lambda p: torch.save({"conv1.weight": torch.zeros(1)}, p), "does not fit the resnet50 architecture"),
])
def test_a_bad_or_missing_weights_file_is_refused_in_one_line(make, says):
    ROOT.mkdir(parents=True, exist_ok=True)
    path = ROOT / "weights.pt"
    path.unlink(missing_ok=True)
    make(path)
    with pytest.raises(UserError, match=says) as e:
        descriptors._network(descriptors.resolved(Descriptor("backbone", 32, weights=str(path))))
    assert "\n" not in str(e.value)


def test_weights_outside_the_data_roots_are_refused(tmp_path):
    outside = tmp_path / "w.pt"
    outside.write_bytes(b"x")
    with pytest.raises(UserError, match="outside the folders"):
        descriptors.resolved(Descriptor("backbone", 32, weights=str(outside)))
    with pytest.raises(UserError, match="descriptor must be one of"):
        Descriptor("colour")
