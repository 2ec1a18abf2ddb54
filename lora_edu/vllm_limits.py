"""Will vLLM serve this adapter? ``vllm_compatibility`` reads a PEFT-format adapter folder and says why not.

vLLM serves the same adapter folders that ``save_adapter`` and PEFT write (``LLM(model, enable_lora=True,
max_lora_rank=..., max_loras=...)`` and a ``LoRARequest(name, int_id, path)`` per request), within limits
read from its source (vllm-project/vllm): ``vllm/config/lora.py`` allows ``max_lora_rank`` only in
``VLLM_MAX_LORA_RANKS`` (default 16) and refuses an adapter whose r is larger ("LoRA rank 64 is greater than
max_lora_rank 16", vLLM issue 2847); ``vllm/lora/peft_helper.py`` refuses DoRA ("vLLM does not yet support
DoRA."), ``modules_to_save`` and adapter biases, and applies rsLoRA's ``lora_alpha / sqrt(r)``. For a Llama
model (SmolLM2 is one) LoRA goes on the seven linear layers of each block, which vLLM packs as ``qkv_proj``,
``o_proj``, ``gate_up_proj`` and ``down_proj``. Explained in notebooks/10_serving.ipynb.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import read_adapter_config

VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm/config/lora.py, max_lora_rank's Literal
LLAMA_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def smallest_max_lora_rank(r: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds rank ``r`` (r = 4 -> 8, r = 40 -> 64)."""
    fitting = [m for m in VLLM_MAX_LORA_RANKS if m >= r]
    if r < 1 or not fitting:
        raise ValueError(f"r={r}: vLLM's max_lora_rank goes from 1 to {VLLM_MAX_LORA_RANKS[-1]}; no setting holds it.")
    return fitting[0]


def vllm_compatibility(config: dict | str | os.PathLike, max_lora_rank: int = 16) -> list[str]:
    """The reasons vLLM (with this ``max_lora_rank``) would refuse the adapter; an empty list means it fits.

    ``config``: an adapter folder or its ``adapter_config.json`` as a dict.
    """
    if not isinstance(config, dict):
        config = read_adapter_config(Path(config))
    problems = []
    if max_lora_rank not in VLLM_MAX_LORA_RANKS:
        problems.append(f"max_lora_rank={max_lora_rank} is not a value vLLM accepts {VLLM_MAX_LORA_RANKS}.")
    r = int(config["r"])
    if r > max_lora_rank:
        problems.append(f"LoRA rank {r} is greater than max_lora_rank {max_lora_rank}: start vLLM with "
                        f"max_lora_rank={smallest_max_lora_rank(r)} (every adapter is padded to it, so not larger).")
    if config.get("use_dora"):
        problems.append("DoRA: vLLM does not support it (its norm depends on the merged weight). Merge it "
                        "into the base model (merge_and_unload) and serve that model instead.")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']!r}: vLLM serves only LoRA's A and B.")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("trained biases: vLLM does not load adapter biases; train with bias='none'.")
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        if targets.lower() != "all-linear":
            problems.append(f"target_modules is a regex ({targets!r}); check by hand that it matches only "
                            f"{list(LLAMA_LORA_MODULES)}.")
    else:
        other = sorted({t.rsplit(".", 1)[-1] for t in targets} - set(LLAMA_LORA_MODULES))
        if other:
            problems.append(f"target_modules {other} are not among the layers vLLM adapts in a Llama block "
                            f"{list(LLAMA_LORA_MODULES)}.")
    return problems
