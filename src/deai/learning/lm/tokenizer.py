"""Byte-level tokenizer: token ``i`` is the byte ``i`` of the UTF-8 text (vocabulary 256).

No merges, no vocabulary file, nothing to download or trust: any string round-trips, and
any token id in ``[0, 256)`` decodes (invalid UTF-8 is replaced, never raised).
"""

from __future__ import annotations

import torch
from torch import Tensor

from deai.errors import ConfigError

VOCAB_SIZE = 256


def encode(text: str) -> Tensor:
    """UTF-8 bytes of ``text`` as ``LongTensor[n]``."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(tokens: Tensor) -> str:
    """Inverse of :func:`encode`; ids must lie in ``[0, 256)``."""
    flat = tokens.reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= VOCAB_SIZE):
        raise ConfigError("tokenizer: token ids must lie in [0, 256)")
    return bytes(flat.to(torch.uint8).tolist()).decode("utf-8", errors="replace")
