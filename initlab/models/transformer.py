"""A small transformer encoder classifier for token sequences, on measurement sites.

Token embedding + learned position embedding (site ``embed_site``, kind embedding), ``depth``
torch.nn.TransformerEncoderLayer's (batch first), the mean over positions, a Linear head. With a
``pad_id`` (IMDB's reviews, padded to seq_len), padding positions are masked out of attention
(``src_key_padding_mask``) and out of the mean, so a review's logits do not depend on how much
padding follows it, and ``content`` tells the probe statistics which positions to count. Each
layer's feed-forward nonlinearity is an ActivationSite (TransformerEncoderLayer takes any module
as ``activation``, which also keeps torch's fused fast path, blind to sites, off), its attention
block's output a ``Site("attention")`` and its output a ``Site("residual")``. ``norm_first`` gives
pre-norm layers and a final LayerNorm before pooling, whose output is a ``Site("norm")``.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from initlab.models.sites import ActivationSite, Site


class SiteEncoderLayer(nn.TransformerEncoderLayer):
    """TransformerEncoderLayer with sites at the attention block's output and the layer's output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attention = Site("attention")
        self.residual = Site("residual")

    def _sa_block(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor],
                  key_padding_mask: Optional[torch.Tensor], is_causal: bool = False) -> torch.Tensor:
        return self.attention(super()._sa_block(x, attn_mask, key_padding_mask, is_causal=is_causal))

    def forward(self, src: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.residual(super().forward(src, *args, **kwargs))


class SiteLayerNorm(nn.LayerNorm):
    """nn.LayerNorm with a ``Site("norm")`` on its output (its parameters keep LayerNorm's names)."""

    def __init__(self, d_model: int, weight: str):
        super().__init__(d_model)
        self.site = Site("norm", weight=weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.site(super().forward(x))


class Transformer(nn.Module):
    """(N, T) token ids (long) -> (N, n_classes) logits."""

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int, depth: int,
                 activation: Callable[[], nn.Module], d_model: int = 64, nhead: int = 4,
                 dim_feedforward: int = 128, norm_first: bool = False, dropout: float = 0.0,
                 pad_id: Optional[int] = None):
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(seq_len, d_model)
        self.embed_site = Site("embedding", weight="embed.weight")
        # nn.TransformerEncoder deep-copies one layer depth times, so every layer started equal (init.apply_to=head
        # kept them so): each layer is built, and drawn, on its own, in order
        layers = [SiteEncoderLayer(d_model, nhead, dim_feedforward, dropout=dropout, batch_first=True,
                                   norm_first=norm_first, activation=ActivationSite(activation()))
                  for _ in range(depth)]
        final_norm = SiteLayerNorm(d_model, weight="encoder.norm.weight") if norm_first else None
        self.encoder = nn.TransformerEncoder(layers[0], depth, norm=final_norm, enable_nested_tensor=False)
        self.encoder.layers = nn.ModuleList(layers)
        for i, enc in enumerate(self.encoder.layers):  # each layer's sites name its own weights
            enc.activation.weight = f"encoder.layers.{i}.linear1.weight"
            enc.attention.weight = f"encoder.layers.{i}.self_attn.out_proj.weight"
        self.head = nn.Linear(d_model, n_classes)
        self.output = Site("output", weight="head.weight")

    def content(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """(N, T) bool: the positions of x (N, T) that hold tokens, or None without a ``pad_id``. A
        sequence of padding alone (an empty review) counts all its positions: masking every key
        would leave attention nothing to attend to (NaN)."""
        if self.pad_id is None:
            return None
        tokens = x != self.pad_id
        return tokens | ~tokens.any(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.embed_site(self.embed(x) + self.position(positions))
        keep = self.content(x)
        if keep is None:
            return self.output(self.head(self.encoder(h).mean(dim=1)))
        h = self.encoder(h, src_key_padding_mask=~keep)
        weights = keep.unsqueeze(-1).to(h.dtype)
        return self.output(self.head((h * weights).sum(dim=1) / weights.sum(dim=1)))
