"""Stage 1: keyword summarization of items (text and image separately), rewards, GRPO, ``item_keywords``.

Downstream stages call ``load_item_keywords`` / ``latest_summarizer_version`` (``lookup.py``).
"""

from mmsrarec_lib.summarize.lookup import RAW, latest_summarizer_version, load_item_keywords
from mmsrarec_lib.summarize.parsing import parse_keywords
from mmsrarec_lib.summarize.rewards import RewardConfig
from mmsrarec_lib.summarize.types import ItemInput, KeywordResult

__all__ = [
    "RAW",
    "ItemInput",
    "KeywordResult",
    "RewardConfig",
    "latest_summarizer_version",
    "load_item_keywords",
    "parse_keywords",
]
