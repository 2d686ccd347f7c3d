"""Helpers shared by the swarm tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import torch

PROMPT = torch.tensor([[1, 5, 9, 33, 7]])  # five token ids of the random Llama's vocabulary
