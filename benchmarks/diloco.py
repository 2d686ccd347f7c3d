"""DiLoCo against synchronous data parallel at equal total inner steps, through the roles.

The plan (issue 17): a Llama-architecture model built from a config
(``deai.llm.models.LlamaSize``: hidden 288, 8 layers, GQA 6/2 heads, SwiGLU 768, vocabulary
8,192 frequency-ranked SmolLM2 ids: 9.44M parameters; one 8 x 64-token AdamW step takes
~1.7 s on one shared core here) on the standard-library corpus (``python_stdlib`` with
``vocab_size=8192``), 4 providers:

* DiLoCo: each provider runs ``H`` inner AdamW steps (``LocalTrainConfig(optimizer=
  "adamw", clip_norm=1.0)``); the validator applies the averaged update with
  :class:`deai.llm.outer.OuterNesterov` (lr 0.7, momentum 0.9).
* Synchronous data parallel: one gradient per provider per round
  (``parallel_sgd``), the validator steps :class:`deai.llm.outer.OuterAdamW` on the mean.

Both at equal total inner steps; bytes are the simulator's (whole encodings, up + down).

It cannot run yet: the job spec's algorithm section passes neither the local optimizer
(``optimizer``, ``weight_decay``, ``beta1``, ``beta2``, ``eps``, ``clip_norm`` of
``LocalTrainConfig``) nor a server optimizer (``OuterNesterov`` / ``OuterAdamW`` instead
of the plain ``server_lr`` step) to the roles. Those belong to the job spec and the
validator's strategy; once they exist this script is the two ``deai.simulate`` calls it
describes. The previous standalone harness (a hand-written GPT outside the roles) is gone
with ``deai.learning.lm``; ``results/diloco.json`` is its last output.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    sys.exit(
        "diloco: needs the local optimizer and a server optimizer in the job spec "
        "(see this file's docstring)"
    )
