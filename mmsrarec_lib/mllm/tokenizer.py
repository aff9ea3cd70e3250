"""A byte-level BPE tokenizer trained locally (``tokenizers``, under a second) on the dataset's own text.

It carries the special tokens an MLLM chat template needs: ``<image>`` (LLaVA's image placeholder), ChatML turn
markers ``<|im_start|>`` / ``<|im_end|>`` (``<|im_end|>`` is also the EOS, so generation stops at the end of the
assistant turn), ``<pad>``, ``<s>`` and ``<unk>``. Byte-level BPE never produces unknown tokens, so any text the
pipeline later feeds it (other datasets, prompts) still encodes.
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<s>", "<|im_end|>", "<unk>"
IMAGE_TOKEN = "<image>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IM_START, IMAGE_TOKEN)

# ChatML with typed content parts; an image part becomes the processor's ``<image>`` placeholder, which the
# LLaVA processor expands into one token per image patch.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the tokenizer always sees besides the corpus, so prompt words and keyword separators get compact merges.
_PROMPT_TEXT = (
    "system user assistant keywords: list the keywords of this item, comma separated. "
    "describe the image in a few keywords. text: title description categories image"
)


def train_tokenizer(*, texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2):
    """Train a byte-level BPE on ``texts`` and return a ``PreTrainedTokenizerFast`` with the chat template set.

    ``vocab_size`` includes the 256 byte symbols and the special tokens; a few thousand suits a tiny model.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level BPE (need >= 300)")
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [t for t in texts if t]
    corpus.append(_PROMPT_TEXT)
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # decoder-only batched generation pads on the left
    return fast
