"""What merging a LoRA update into a 16-bit weight loses: the spacing of a float format and the rounding.

Merging writes ``W = W0 + delta_W`` back into the base weight's dtype (Hu et al. 2021, arXiv 2106.09685,
section 4.1: one matrix, so no added inference latency). In fp32 that rounding is invisible. In bf16 it is
not: bf16 keeps 8 significant bits (7 stored + 1 implicit), so neighbouring bf16 numbers near a weight ``w``
are ``spacing(w) = eps * 2^(e - 1)`` apart (``w = m * 2^e``, ``m`` in [0.5, 1), ``eps = 2^-7``), and an update
entry smaller than half that spacing is rounded away entirely. This is the drift of PEFT issue 1388
("W_load != W + BA"): the merged bf16 model is not the unmerged bf16 model, while the unmerged forward keeps
the update in an fp32 side path. Explained in notebooks/05_merging.ipynb (section "Merging in bf16").
"""

from __future__ import annotations

import torch


def spacing(weight: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The gap between ``weight`` (each entry) and the next larger number of ``dtype``, as fp32, same shape.

    ``dtype`` defaults to ``weight.dtype`` and must be a floating-point type. Zero and subnormal entries get
    the gap at the smallest normal number (``finfo.tiny``), where the spacing stops shrinking.
    """
    dtype = weight.dtype if dtype is None else dtype
    if not dtype.is_floating_point:
        raise TypeError(f"spacing needs a floating-point dtype, got {dtype}. Pass e.g. torch.bfloat16.")
    info = torch.finfo(dtype)
    w = weight.detach().float().abs().clamp_min(info.tiny)
    _, exponent = torch.frexp(w)  # w = m * 2^e with m in [0.5, 1)
    return info.eps * torch.pow(2.0, (exponent - 1).float())


def merge_rounding(weight: torch.Tensor, delta: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> dict:
    """Merge ``delta`` into ``weight`` stored in ``dtype`` the way ``LoraLinear.merge`` does, and measure the loss.

    The base weight is first stored in ``dtype`` (the model you would merge into): ``w = weight.to(dtype)``.
    The merge adds in fp32 and rounds once, ``merged = (w + delta).to(dtype)``, so the update that really
    lands in the weight is ``effective = merged - w``. Returns a dict (``n`` an int, the rest floats):

    - ``n``: the number of nonzero ``delta`` entries, the n of ``vanished``;
    - ``vanished``: the share of nonzero ``delta`` entries with ``effective == 0`` (rounded away entirely);
    - ``relative_error``: ``||effective - delta||_F / ||delta||_F`` (0 = the update survives exactly);
    - ``median_relative_size``: the median of ``|delta| / |w|`` over entries where both are nonzero;
    - ``half_spacing``: ``eps / 2`` of ``dtype``, the relative size below which an entry can vanish
      (between ``eps / 4`` and ``eps / 2`` of ``|w|``, depending on where ``w`` sits in its power of two).
    """
    if weight.shape != delta.shape:
        raise ValueError(f"weight {tuple(weight.shape)} and delta {tuple(delta.shape)} differ in shape; delta_W "
                         "must be (out_features, in_features) like the weight. Use layer.get_delta_weight().")
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point type, got {dtype}. Pass e.g. torch.bfloat16.")
    delta = delta.detach().float()
    if not torch.isfinite(delta).all():
        raise ValueError("delta has NaN/Inf entries, so nothing meaningful can be merged. Check the adapter "
                         "(a diverged training run?).")
    norm = torch.linalg.norm(delta)
    if norm == 0:
        raise ValueError("delta is all zero (an untrained adapter: B starts at 0), so there is no rounding to "
                         "measure. Train the adapter first, or pass its layer.get_delta_weight() after training.")
    w = weight.detach().to(dtype).float()  # the stored base weight, exactly representable in dtype
    effective = (w + delta).to(dtype).float() - w  # (out, in): the update the merged weight really holds
    nonzero = delta != 0
    sized = nonzero & (w != 0)
    return {"n": int(nonzero.sum()), "vanished": float((effective[nonzero] == 0).float().mean()),
            "relative_error": float(torch.linalg.norm(effective - delta) / norm),
            "median_relative_size": float((delta[sized].abs() / w[sized].abs()).median()),
            "half_spacing": torch.finfo(dtype).eps / 2}
