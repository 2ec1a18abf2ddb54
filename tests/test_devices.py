"""Device discipline: the library builds every tensor on the device of the model or tensor it was given.

A CPU-only machine has one real device, so a CPU tensor made by mistake goes unnoticed there and fails only on a
GPU ("Expected all tensors to be on the same device"). These tests run the library with its inputs on PyTorch's
``meta`` device (shapes and dtypes, no data) under ``strict_devices``, which applies CUDA's rule to every torch
call: all tensors of more than 0 dimensions on one device. (PyTorch itself lets meta and CPU tensors mix.) A
tensor the code builds on the CPU by mistake then raises here as it would on a GPU. Code that must read values
(``.item()``, a finite check) cannot run on meta; for that, the notebooks' GPU run (``make gpu-check``) is the check.
"""

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from lora_edu import LoraConfig, inject_lora, lora_layers, lowrank
from lora_edu.baselines import add_zero_biases
from lora_edu.layers import LoraLinear
from lora_edu.pretrained import tiny_llama
from lora_edu.training import to_device

META = torch.device("meta")
# Calls that cross devices on purpose (moving a module runs the last one on old and new tensor).
MOVES = {torch.Tensor.to, torch.Tensor.copy_, torch.Tensor.cpu, torch.Tensor.cuda, torch._has_compatible_shallow_copy_type}


class strict_devices(TorchFunctionMode):  # noqa: N801 (used as a context manager, like torch's own modes)
    """Raise when one torch call mixes devices, as CUDA does (a 0-dim CPU tensor may join, as on CUDA)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in MOVES:
            devices = {t.device for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dim() > 0}
            if len(devices) > 1:
                raise RuntimeError(f"{getattr(func, '__name__', func)} mixes devices {sorted(map(str, devices))}")
        return func(*args, **kwargs)


def test_a_cpu_tensor_meeting_a_meta_tensor_raises():
    # The premise of this file: mixing devices fails under strict_devices as it does on CUDA.
    with strict_devices(), pytest.raises(RuntimeError, match="mixes devices"):
        torch.ones(2, 2, device=META) @ torch.ones(2, 2)
    with strict_devices():
        torch.ones(2, 2, device=META) * torch.tensor(2.0)  # a 0-dim CPU scalar is allowed, as on CUDA


@pytest.mark.parametrize("use_dora", [False, True])
def test_a_lora_layer_on_another_device_computes_there(use_dora):
    layer = LoraLinear(torch.nn.Linear(16, 8, bias=True), r=4, lora_alpha=8, use_dora=use_dora).to(META)
    x = torch.randn(3, 16, device=META)  # (tokens, in)
    with strict_devices():
        assert layer(x).device == META
        assert layer.get_delta_weight().device == META


def test_inject_lora_puts_the_new_weights_on_the_base_layers_device():
    model = tiny_llama().to(META)
    with strict_devices():
        inject_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    devices = {p.device for _, layer in lora_layers(model) for p in (layer.lora_A.weight, layer.lora_B.weight)}
    assert devices == {META}


def test_bitfit_biases_are_made_on_the_weights_device():
    model = tiny_llama().to(META)
    with strict_devices():
        assert add_zero_biases(model) > 0
    assert {m.bias.device for m in model.modules() if isinstance(m, torch.nn.Linear) and m.bias is not None} == {META}


def test_a_batch_goes_where_it_is_sent():
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "labels": torch.zeros(2, 3, dtype=torch.long)}
    assert {v.device for v in to_device(batch, META).values()} == {META}


def test_the_subspace_similarity_grid_stays_on_its_inputs_device(monkeypatch):
    # The SVD has no meta kernel; stand in a basis of the right shape, keep the grid arithmetic real.
    monkeypatch.setattr(lowrank, "_singular_basis", lambda M, side: torch.ones(M.shape[1], min(M.shape), device=M.device))
    A, B = torch.ones(4, 16, device=META), torch.ones(6, 16, device=META)
    monkeypatch.setattr(lowrank, "_check_pair", lambda A, B, side: (A, B))
    with strict_devices():
        assert lowrank.subspace_similarity_grid(A, B).device == META
