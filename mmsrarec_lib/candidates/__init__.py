"""Candidate generation beyond the ID model: a content index over every item (text and image), so sparse and
brand-new items can be recommended (docs/candidates.md).

```python
stats = refresh_content_index(warehouse, dataset, config=ContentIndexConfig())   # incremental
index = load_content_index(warehouse, dataset)
index.candidates(histories, m=50, exclude=seen_sets)    # [[(item_id, cosine), ...], ...]
index.score(histories, candidates)                       # cosines, NaN where content is missing
```
"""

from mmsrarec_lib.candidates.content import ContentIndex, ContentIndexConfig, ItemContentInput, build_or_refresh
from mmsrarec_lib.candidates.store import (
    latest_content_version,
    load_content_index,
    prune_content_versions,
    refresh_content_index,
    save_content_index,
)

__all__ = [
    "ContentIndex",
    "ContentIndexConfig",
    "ItemContentInput",
    "build_or_refresh",
    "latest_content_version",
    "load_content_index",
    "prune_content_versions",
    "refresh_content_index",
    "save_content_index",
]
