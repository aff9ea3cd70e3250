"""Shared multimodal-LLM infrastructure: a locally trained tokenizer, a tiny LLaVA built from a config, one loader
for hub ids and local folders alike, and chat-prompt building with an optional image.

Used by stage 1 (keyword summarization) and stage 3 (the recommender). See docs/summarize.md for the API.
"""

from mmsrarec_lib.mllm.chat import build_inputs, build_messages, generate_text
from mmsrarec_lib.mllm.loading import load_mllm, resolve_device
from mmsrarec_lib.mllm.tiny import TinyMllmConfig, build_tiny_mllm
from mmsrarec_lib.mllm.tokenizer import CHAT_TEMPLATE, SPECIAL_TOKENS, train_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TinyMllmConfig",
    "build_inputs",
    "build_messages",
    "build_tiny_mllm",
    "generate_text",
    "load_mllm",
    "resolve_device",
    "train_tokenizer",
]
