"""A counter of CPU -> other-device data movements, for the tests that no per-call copy remains.

On a GPU each such movement is a blocking host-to-device copy. The tests run without one: they move the
layer to PyTorch's ``meta`` device (tensors with shapes and no data) and count every operator that reads a
CPU tensor while another tensor of the same call (input or output) lives elsewhere: an explicit ``.to()``,
a ``copy_`` across devices, or an op that mixes a CPU table into device data.
"""

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class CrossDeviceCopies(TorchDispatchMode):
    """``with CrossDeviceCopies() as moves: ...``; then ``moves.ops`` lists the operators that moved data."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        reads_cpu = any(t.device.type == "cpu" for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))
        if reads_cpu and any(t.device.type != "cpu" for t in tensors):
            self.ops.append(str(func))
        return out
