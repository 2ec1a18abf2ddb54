"""Supervised fine-tuning of a chat model with LoRA: the training loop.

The examples it trains on (chat template, answer, end token, padding) come from ``lora_edu.chat``.

- ``train``: AdamW over the trainable (LoRA) parameters only, gradient clipping, linear or cosine learning-rate
  schedule with warmup, periodic evaluation, a ``tqdm.auto`` bar, and a ``TrainResult`` with the loss history.
  Device and precision come from ``runtime.precision_policy``: bf16 autocast on Ampere+ GPUs, fp16 autocast
  with a ``GradScaler`` on older GPUs (Colab's T4), plain fp32 on the CPU.
- ``batch_order``: the example indices of every step's batch, the seeded shuffle ``train`` draws from (notebook
  12 reads from it how many corrupted targets a run saw, without training).

LoRA: Hu et al. 2021, arXiv 2106.09685 (section 4.1: only A and B are optimised, with Adam). AdamW: Loshchilov &
Hutter, arXiv 1711.05101. Explained in notebooks/04_lora_in_a_transformer.ipynb; evaluation is in
``lora_edu.evaluation``.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import evaluation
from .chat import IGNORE_INDEX, check_examples, collate, example_features, pad_token_id
from .distributed import World, all_reduce_sum, barrier, check_global_batch, shard, wrap_model
from .runtime import Precision, check_precision, get_device, precision_policy, seed_everything

SCHEDULES = ("linear", "cosine", "constant")


# --- schedule and one optimisation step -----------------------------------------------------------------
def lr_factor(step: int, steps: int, warmup_steps: int = 0, schedule: str = "linear") -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based).

    Warmup rises linearly, (step + 1) / warmup_steps, reaching 1 at step warmup_steps - 1; then "linear" falls
    towards 0, "cosine" follows half a cosine towards 0, "constant" stays at 1. The last step still has a
    positive lr (1 / (steps - warmup_steps) of the peak for "linear"), so no step is wasted on lr = 0.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)  # 0 right after warmup, < 1 at the end
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


@torch.no_grad()
def activation_ranges(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[float, int]]:
    """One forward pass of ``batch``; per module with a tensor output: (max |output|, non-finite entries).

    What an fp16 run needs to know (benchmarks/fp16_overflow.py): fp16 overflows past 65504 to inf, and an inf
    turns into nan a few operations later, which no GradScaler repairs (it rescales gradients, not activations).
    """
    seen: dict[str, tuple[float, int]] = {}

    def hook(name):
        def record(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor) and out.is_floating_point():
                finite = torch.isfinite(out)
                peak = out.abs().where(finite, 0).max().item() if out.numel() else 0.0
                seen[name] = (peak, int((~finite).sum().item()))
        return record

    device = next(model.parameters()).device
    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        model(**{k: v.to(device) for k, v in batch.items() if k != "labels"})
    finally:
        for h in handles:
            h.remove()
    return seen


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def training_step(model, batch, optimizer, scaler, precision: Precision, max_grad_norm: float | None,
                  world: World | None = None):
    """Forward, backward, clip, step. Returns (loss, grad norm before clipping); leaves the clipped grads.

    With a ``world`` (``model`` wrapped in DDP, ``batch`` this rank's shard) the loss returned is the mean over
    the answer tokens of the whole global batch, and so are the gradients, as on one process.
    """
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        loss = model(**batch).loss  # mean cross-entropy over the label tokens (the answers)
    if world is not None:
        # Each rank's loss is a mean over its own answer tokens, and DDP averages the gradients over the W
        # ranks. Weighting rank k by W * n_k / n (its share of the n answer tokens of the global batch) makes
        # that average the gradient of the mean over all n tokens: the single-process loss.
        n_local = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # labels are shifted by one inside
        loss_sum, n_global = all_reduce_sum([loss.item() * n_local, n_local], world)  # same on every rank
        if not math.isfinite(loss_sum):  # every rank sees the same sum, so all of them stop together
            return loss_sum, float("nan")
        scaler.scale(loss * (world.world_size * n_local / n_global)).backward()  # DDP all-reduces A, B grads
        return _clip_and_step(optimizer, scaler, max_grad_norm, loss_sum / n_global)
    if not torch.isfinite(loss):  # stop before the step: the adapter keeps its last good values
        return loss.item(), float("nan")
    scaler.scale(loss).backward()  # scaled by GradScaler on fp16; a no-op scale otherwise
    return _clip_and_step(optimizer, scaler, max_grad_norm, loss.item())


def _clip_and_step(optimizer, scaler, max_grad_norm: float | None, loss: float):
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else float("inf"))
    if not torch.isfinite(norm) and not scaler.is_enabled():
        return loss, norm.item()  # no step: the caller stops with a clear message
    scaler.step(optimizer)  # with fp16 a step with inf/NaN gradients is skipped and the scale lowered
    scaler.update()
    return loss, norm.item()


@torch.no_grad()
def validation_loss(model, tokenizer, examples, batch_size: int = 8, precision: Precision | None = None) -> float:
    """Mean cross-entropy per answer token over ``examples`` (the loss train() minimises, on held-out data);
    per token of the whole text for raw ``{"text": ...}`` examples."""
    check_examples(examples, allow_text=True)
    device = next(model.parameters()).device
    precision = precision or precision_policy(device)
    was_training, pad = model.training, pad_token_id(tokenizer)
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(examples), batch_size):
        feats = [example_features(tokenizer, ex) for ex in examples[i:i + batch_size]]
        batch = to_device(collate(feats, pad), device)
        with precision.autocast():
            n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # labels are shifted by one inside
            total += model(**batch).loss.float().item() * n
        count += n
    model.train(was_training)
    return total / count


# --- the loop -------------------------------------------------------------------------------------------
class TrainingDiverged(FloatingPointError):
    """The loss or the gradients became NaN/Inf; ``.result`` holds the history up to the last good step."""

    def __init__(self, message: str, result: TrainResult):
        super().__init__(message)
        self.result = result


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # per step: step, loss, lr, grad_norm
    eval_history: list[dict] = field(default_factory=list)  # per evaluation: step, val_loss[, metrics]
    wall_time_s: float = 0.0  # the whole call, evaluations included
    train_time_s: float = 0.0  # the optimisation steps only
    tokens_per_s: float = 0.0  # real (unpadded) tokens through forward + backward per second of training
    peak_memory_bytes: int | None = None  # torch.cuda.max_memory_allocated; None on the CPU
    device: str = "cpu"
    precision: str = ""


def _check_arguments(model, steps, batch_size, lr, warmup_steps, schedule, max_grad_norm, eval_every):
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be > 0 and finite, got {lr!r} (LoRA usually trains at 1e-4 .. 1e-3).")
    if not 0 <= warmup_steps < steps:
        raise ValueError(f"warmup_steps must be in [0, steps) = [0, {steps}), got {warmup_steps!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0 or None (no clipping), got {max_grad_norm!r}.")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 1):
        raise ValueError(f"eval_every must be an int >= 1 or None, got {eval_every!r}.")
    merged = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and getattr(m, "merged", False)]
    if merged:
        raise ValueError(f"{len(merged)} LoRA layers are merged (e.g. {merged[0]!r}): a merged layer computes "
                         "with W0 + delta_W and skips lora_A and lora_B, so they would get no gradient. Call "
                         "layer.unmerge() on each (or reload the model and load_adapter) before training.")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters, so training would change nothing. "
                         "Call inject_lora(model, LoraConfig(...)) first (it freezes the base, trains A and B).")
    return params


def _check_optimizer(model, optimizer) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}. Build one "
                        "from the model, e.g. torch.optim.AdamW(trainable params, lr=1e-3) or "
                        "create_loraplus_optimizer(model, lr=1e-4).")
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    if not held or any(id(p) not in trainable for p in held):
        raise ValueError("The optimizer must hold trainable parameters of this model (and at least one). "
                         "Build it after inject_lora / freeze_all_but_biases / full_finetune_setup.")


def batch_order(n: int, steps: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """The example indices of each step's batch, as ``train`` draws them: a seeded shuffle of all ``n``
    examples (``torch.randperm`` from its own generator), then a fresh shuffle for every epoch; a batch may
    straddle two epochs. Which examples a run saw can be read from this without training."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    batches = []
    for _ in range(steps):
        if len(order) < batch_size:  # a fresh shuffle of the whole set for every epoch
            order += torch.randperm(n, generator=generator).tolist()
        batches.append(order[:batch_size])
        order = order[batch_size:]
    return batches


def train(model, tokenizer, train_examples, *, steps: int, batch_size: int = 8, lr: float = 2e-4,
          warmup_steps: int = 0, schedule: str = "linear", weight_decay: float = 0.0,
          max_grad_norm: float | None = 1.0, eval_examples=None, eval_every: int | None = None,
          eval_generate: int = 0, seed: int = 0, device=None, precision: Precision | None = None,
          optimizer: torch.optim.Optimizer | None = None, progress: bool = True,
          world: World | None = None) -> TrainResult:
    """Fine-tune the trainable parameters of ``model`` (in place) for ``steps`` AdamW steps; see the module doc.

    Batches of ``batch_size`` examples are drawn from a seeded shuffle, epoch after epoch. Every ``eval_every``
    steps and at the end (when ``eval_examples`` is given) it records the validation loss and, for the first
    ``eval_generate`` eval examples, greedy-generation metrics (``lora_edu.evaluation.evaluate``). The model is
    moved to ``device`` (default: CUDA if present) but not cast: load it in ``precision.dtype`` before
    ``inject_lora``, so 16-bit bases get fp32 adapters. It is left in eval mode. Raises ``TrainingDiverged`` on a
    NaN/Inf loss or gradient, with the trainable weights put back to the values of the last step whose loss
    was finite (before its update, which is the one that can have blown them up). That costs two copies of the
    trainable parameters on their device: a few MB for LoRA, twice the model for full fine-tuning.

    ``optimizer`` replaces the default ``AdamW(trainable params, lr, weight_decay)``, for example LoRA+'s two
    learning rates (``create_loraplus_optimizer``); ``lr`` and ``weight_decay`` are then unused, and the schedule
    scales every group from its own lr. Build it from the model's trainable parameters, after ``model.to(device)``.

    ``world`` (``lora_edu.distributed.init_world()`` under torchrun): data-parallel training with DDP. Every
    rank draws the same shuffled global batches of ``batch_size`` and trains on its slice of each, so the loss
    curve and the adapter match one process within floating-point reduction order; rank 0 alone evaluates.
    """
    params = _check_arguments(model, steps, batch_size, lr, warmup_steps, schedule, max_grad_norm, eval_every)
    if optimizer is not None:
        _check_optimizer(model, optimizer)
    check_examples(train_examples, "train_examples", allow_text=True)
    if eval_examples is not None:
        check_examples(eval_examples, "eval_examples")
    if world is not None:
        check_global_batch(batch_size, world.world_size)
        device = world.device  # cpu on gloo, this rank's GPU on nccl
    if device is None:  # a given precision names its device type; else CUDA when present
        device = torch.device(precision.device_type) if precision is not None else get_device()
    device = torch.device(device)
    precision = precision or precision_policy(device)
    check_precision(precision, device)  # bf16 on a T4: refused with the fix, before any work
    if precision.use_grad_scaler and any(p.dtype != torch.float32 for p in params):
        raise ValueError("GradScaler needs fp32 trainable parameters (it cannot unscale fp16 gradients). Cast "
                         "the base model first, then inject_lora: the adapters are then created in fp32.")
    start = time.perf_counter()
    seed_everything(seed)
    model.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pad = pad_token_id(tokenizer)
    features = [example_features(tokenizer, ex) for ex in train_examples]
    optimizer = optimizer or torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # one factor for all groups: each keeps its own peak lr
        optimizer, lambda s: lr_factor(s, steps, warmup_steps, schedule))
    scaler = precision.grad_scaler()
    batches = batch_order(len(features), steps, batch_size, seed)
    result = TrainResult(device=str(device), precision=precision.reason)
    tokens, train_time = 0, 0.0

    def evaluate_now(step: int) -> None:
        record = {"step": step, "val_loss": validation_loss(model, tokenizer, eval_examples, batch_size,
                                                            precision)}
        if eval_generate:

            metrics = evaluation.evaluate(model, tokenizer, eval_examples[:eval_generate], batch_size=batch_size)
            record.update({k: v for k, v in metrics.items() if k != "predictions"})
        result.eval_history.append(record)

    # The values each trainable tensor had before the last step whose loss and gradients were finite: that
    # step's update is the one that can blow A and B up (lr 1e30 gives finite 1e30s, then a NaN loss), so a
    # divergence goes back there. Two copies of the trainable parameters (small for LoRA), swapped each step.
    before_step = [torch.empty_like(p) for p in params]
    last_good = [p.detach().clone() for p in params]
    net = model if world is None else wrap_model(model, world)  # DDP: forward and backward go through net
    model.train()
    bar = tqdm(range(steps), desc="training", disable=not progress or (world is not None and not world.is_main))
    for step in bar:
        chosen = batches[step]
        mine = shard(chosen, world)  # this rank's slice of the global batch (all of it on one process)
        batch = to_device(collate([features[i] for i in mine], pad), device)
        t0 = time.perf_counter()
        current_lr = optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            for saved, p in zip(before_step, params, strict=True):
                saved.copy_(p)
        loss, norm = training_step(net, batch, optimizer, scaler, precision, max_grad_norm, world)
        if not (math.isfinite(loss) and (math.isfinite(norm) or scaler.is_enabled())):
            with torch.no_grad():
                for saved, p in zip(last_good, params, strict=True):
                    p.copy_(saved)
            model.eval()
            optimizer.zero_grad(set_to_none=True)
            good = f"step {step - 1}'s" if step else "their initial"
            raise TrainingDiverged(f"step {step}: loss {loss}, gradient norm {norm}. The trainable weights "
                                   f"are back at {good} values (the last finite loss), before the update that "
                                   "led here. Fix: lower lr (e.g. by 10x; full "
                                   "fine-tuning wants 1e-5 .. 5e-5), keep max_grad_norm set, or use bf16/fp32 "
                                   "instead of fp16.", result)
        before_step, last_good = last_good, before_step  # this step was good: its starting values are kept
        with warnings.catch_warnings():  # fp16: a skipped overflow step makes torch warn; the schedule goes on
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            scheduler.step()
        train_time += time.perf_counter() - t0
        tokens += sum(len(features[i]["input_ids"]) for i in chosen)  # the whole global batch, unpadded
        result.history.append({"step": step, "loss": loss, "lr": current_lr, "grad_norm": norm})
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{current_lr:.2e}")
        if eval_examples is not None and ((eval_every and (step + 1) % eval_every == 0) or step + 1 == steps):
            if world is None or world.is_main:
                evaluate_now(step + 1)
            barrier(world, f"evaluation at step {step + 1}")
            model.train()
    del net  # the DDP wrapper; the model itself holds the trained adapter
    model.eval()
    optimizer.zero_grad(set_to_none=True)
    result.train_time_s, result.wall_time_s = train_time, time.perf_counter() - start
    result.tokens_per_s = tokens / train_time if train_time > 0 else 0.0
    if device.type == "cuda":
        result.peak_memory_bytes = torch.cuda.max_memory_allocated(device)
    return result
