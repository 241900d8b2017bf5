"""The dual KV cache, allocated once per story and written in place.

Token layout of the self-attention cache (per layer)::

    [ global context: 6 history frames | local: chunk 0 | chunk 1 | ... | chunk 6 ]

The reference keeps these as two separate caches and concatenates (and clones) them on every
forward; one contiguous buffer makes the attention keys of chunk ``b`` a plain prefix view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class SelfAttentionCache:
    """Post-RoPE keys and values ``[layers, 1, tokens, heads, head_dim]``."""

    def __init__(self, num_layers: int, max_tokens: int, num_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (num_layers, 1, max_tokens, num_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


@dataclass
class TextCache:
    """Cross-attention keys/values per layer: ``k[layer]`` is ``[captions, text_len, heads, head_dim]``."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
