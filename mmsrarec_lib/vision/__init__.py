"""Pretrained image encoders and the ``item_image_features`` table (docs/vision.md).

```python
enc = load_image_encoder("efficientnet-lite0")      # or a HF vision model id / local path
out = enc.encode(images, batch_size=32)             # PIL images or encoded bytes
out.features, out.probs, enc.class_names            # [n, enc.feature_dim], [n, n_classes] | None
item_ids, feats = read_image_features(warehouse, dataset, encoder="efficientnet-lite0")
```
"""

from mmsrarec_lib.vision.encoder import (
    DEFAULT_ENCODER,
    EfficientNetLiteEncoder,
    HFImageEncoder,
    ImageEncoder,
    ImageEncoding,
    MissingModelPackage,
    load_image_encoder,
)
from mmsrarec_lib.vision.preprocess import decode_image, preprocess
from mmsrarec_lib.vision.table import TABLE, read_image_features

__all__ = [
    "DEFAULT_ENCODER",
    "TABLE",
    "EfficientNetLiteEncoder",
    "HFImageEncoder",
    "ImageEncoder",
    "ImageEncoding",
    "MissingModelPackage",
    "decode_image",
    "load_image_encoder",
    "preprocess",
    "read_image_features",
]
