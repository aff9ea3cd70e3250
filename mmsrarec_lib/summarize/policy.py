"""The extractive summarizer's learned selection policy: a small MLP scoring each candidate keep/drop.

``p_keep = sigmoid(MLP(features))`` per candidate. Sampling keeps each candidate independently (Bernoulli), so a
sample's log-probability is a sum over candidates, which is what GRPO needs. Decoding is deterministic: keep the
candidates with ``p_keep >= threshold`` (best first, at most ``n_max``, at least one).

One class serves both modalities: the text policy reads ``candidates.FEATURES``, the image policy
``image_keywords.IMAGE_FEATURES`` (``features=`` at construction; saved in ``policy.json`` and checked on load).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mmsrarec_lib.summarize.candidates import FEATURES


@dataclass(frozen=True)
class PolicyConfig:
    hidden: int = 16
    threshold: float = 0.5
    n_max: int = 10
    seed: int = 0


class SelectionPolicy(nn.Module):
    def __init__(self, config: PolicyConfig = PolicyConfig(), *, features: tuple[str, ...] = FEATURES) -> None:
        super().__init__()
        self.config = config
        self.features = tuple(features)
        torch.manual_seed(config.seed)
        self.net = nn.Sequential(nn.Linear(len(self.features), config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1))

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """[C, F] -> [C] keep logits."""
        return self.net(features).squeeze(-1)

    def sample(self, features: np.ndarray, *, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` keep masks [n, C] (float 0/1) and their log-probabilities [n] (with grad)."""
        x = torch.as_tensor(features, dtype=torch.float32)  # [C, F]
        logit = self.logits(x)  # [C]
        p = torch.sigmoid(logit).detach()
        masks = (torch.rand((n, x.shape[0]), generator=generator) < p).float()  # [n, C]
        logp = -nn.functional.binary_cross_entropy_with_logits(
            logit.expand_as(masks), masks, reduction="none"
        ).sum(-1)  # [n]
        return masks, logp

    @torch.no_grad()
    def select(self, phrases: list[str], features: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Deterministic choice: phrases kept (by p_keep, best first) and every candidate's p_keep [C]."""
        if not phrases:
            return [], np.zeros(0, dtype=np.float32)
        p = torch.sigmoid(self.logits(torch.as_tensor(features, dtype=torch.float32))).numpy()  # [C]
        order = np.argsort(-p, kind="stable")
        keep = [i for i in order if p[i] >= self.config.threshold][: self.config.n_max] or [int(order[0])]
        return [phrases[i] for i in keep], p

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), out / "policy.pt")
        (out / "policy.json").write_text(json.dumps({"config": asdict(self.config), "features": list(self.features)},
                                                   indent=2))
        return out

    @classmethod
    def load(cls, in_dir: str | Path, *, features: tuple[str, ...] = FEATURES) -> SelectionPolicy:
        in_dir = Path(in_dir)
        meta_path = in_dir / "policy.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no selection policy at {in_dir} (policy.json missing)")
        meta = json.loads(meta_path.read_text())
        if list(meta["features"]) != list(features):
            raise ValueError(f"policy at {in_dir} was trained on features {meta['features']}, "
                             f"code has {list(features)}")
        policy = cls(PolicyConfig(**meta["config"]), features=features)
        policy.load_state_dict(torch.load(in_dir / "policy.pt", weights_only=True))
        policy.eval()
        return policy
