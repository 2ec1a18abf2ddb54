"""vllm_compatibility names each reason vLLM would refuse an adapter, and passes one it would serve."""

import pytest

from lora_edu.vllm_limits import VLLM_MAX_LORA_RANKS, smallest_max_lora_rank, vllm_compatibility

GOOD = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "use_dora": False}


def test_a_plain_adapter_fits():
    assert vllm_compatibility(GOOD) == []
    assert vllm_compatibility({**GOOD, "target_modules": "all-linear", "use_rslora": True}) == []


@pytest.mark.parametrize("change, reason", [
    ({"r": 64}, "LoRA rank 64 is greater than max_lora_rank 16: start vLLM with max_lora_rank=64"),
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"bias": "all"}, "biases"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, r"\['embed_tokens'\] are not among"),
])
def test_each_refusal_has_its_reason(change, reason):
    problems = vllm_compatibility({**GOOD, **change})
    assert len(problems) == 1
    assert __import__("re").search(reason, problems[0])


def test_max_lora_rank_must_be_a_vllm_value_and_rounds_up():
    assert "not a value vLLM accepts" in vllm_compatibility(GOOD, max_lora_rank=12)[0]
    assert [smallest_max_lora_rank(r) for r in (1, 4, 8, 12, 40, 300)] == [1, 8, 8, 16, 64, 320]
    assert VLLM_MAX_LORA_RANKS[-1] == 512
    with pytest.raises(ValueError, match="no setting holds it"):
        smallest_max_lora_rank(1024)


def test_reads_an_adapter_folder(tmp_path):
    import torch

    from lora_edu import LoraConfig, inject_lora, save_adapter
    from lora_edu.pretrained import tiny_llama

    torch.manual_seed(0)
    path = save_adapter(inject_lora(tiny_llama(), LoraConfig(r=12, target_modules=["q_proj"])), tmp_path / "a")
    assert vllm_compatibility(path, max_lora_rank=16) == []
    assert "max_lora_rank=16" in vllm_compatibility(path, max_lora_rank=8)[0]
