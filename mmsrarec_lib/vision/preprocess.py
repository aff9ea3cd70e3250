"""Decoding and the exact preprocessing the pretrained image models were trained with.

EfficientNet-Lite (like EfficientNet) is evaluated on a centre crop of ``image_size / (image_size + 32)`` of the
image, resized bicubically (the TF reference ``preprocessing.py``, CROP_PADDING = 32; the PyTorch port's ImageNet
example does the same with ``Resize(256, BICUBIC)`` + ``CenterCrop(224)``). We resize the shorter side to 256 and
crop the central 224x224, scale to [0, 1] and normalise with the ImageNet mean/std, channels first.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_PADDING = 32


def decode_image(data):
    """A PIL image (RGB) from a PIL image or encoded bytes; ValueError saying why when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(data, Image.Image):
        return data.convert("RGB")
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"expected a PIL.Image or bytes, got {type(data).__name__}")
    if not data:
        raise ValueError("empty image bytes")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"undecodable image ({type(exc).__name__}: {exc})") from exc


def resize_center_crop(img, *, size: int, crop_padding: int = CROP_PADDING):
    """Shorter side to ``size + crop_padding`` (bicubic), then the central ``size`` x ``size`` square."""
    from PIL import Image

    w, h = img.size
    short = size + crop_padding
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor_array(img, *, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """float32 [3, H, W]: RGB scaled to [0, 1], minus ``mean``, over ``std`` per channel."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    a = (a - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32)


def preprocess(images: Sequence, *, size: int = 224, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """float32 [n, 3, size, size] from PIL images or bytes (ValueError naming the index of a bad image)."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, data in enumerate(images):
        try:
            img = decode_image(data)
        except ValueError as exc:
            raise ValueError(f"image {i}: {exc}") from exc
        out[i] = to_tensor_array(resize_center_crop(img, size=size), mean=mean, std=std)
    return out
