"""The seed's practical advice, put to the test (notebook 12): one run of any training route on any data.

``run_route(train_examples, test_examples, route=...)`` loads the base model, sets up one of ``ROUTES``,
optionally continues pre-training on raw text first, fine-tunes, scores the test examples and returns one
JSON-able row with the result *and* the cost (time, trainable numbers, training memory, file size):

- ``"lora"``: LoRA on the chosen linear layers, the base frozen (notebook 04's recipe);
- ``"lora+embeddings"``: the same, plus the token embedding trained in full, at its own ``embedding_lr``.
  SmolLM2 ties its output head to the embedding and we train that one shared tensor, so the head trains too.
  In PEFT that is ``modules_to_save=["embed_tokens"]`` *with* ``ensure_weight_tying=True``: without it PEFT
  trains a deep copy of the embedding, leaves the tied head frozen, and warns (huggingface/peft#2777);
- ``"full"``: every weight trains (full fine-tuning).

``pretrain_text`` + ``pretrain_steps``: continued pre-training (CPT) on raw text before the supervised
fine-tuning (SFT), same route and same trainable weights, a fresh optimizer for each stage (as two separate
jobs would have). The seed's "CPT, then SFT" for a large change of behaviour, such as a new language.

``paged_optimizer_peak`` (a GPU only) measures the peak memory of a few full fine-tuning steps with
bitsandbytes' ``PagedAdamW`` against ``torch.optim.AdamW``.

Explained in notebooks/12_advice_tested.ipynb. Paged optimizers: Dettmers et al. 2023 (QLoRA), section 3.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from . import pretrained
from .baselines import full_finetune_setup, training_state_bytes
from .config import LoraConfig
from .evaluation import evaluate
from .runtime import NoGPUError, get_device, gpu_message, precision_policy, seed_everything
from .training import TrainingDiverged, train, validation_loss

ROUTES = ("lora", "lora+embeddings", "full")


def prepare_route(model: torch.nn.Module, route: str, r: int = 8, lora_alpha: float = 16.0,
                  target_modules="all-linear") -> int:
    """Make ``model`` trainable the way ``route`` says (in place); return the number of trainable numbers."""
    from .model import inject_lora, trainable_parameters

    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}.")
    if route == "full":
        full_finetune_setup(model)
    else:
        inject_lora(model, LoraConfig(r=r, lora_alpha=lora_alpha, target_modules=target_modules))
        if route == "lora+embeddings":
            model.get_input_embeddings().weight.requires_grad_(True)  # tied to lm_head in SmolLM2: one tensor
    return trainable_parameters(model)[0]


def saved_bytes(model: torch.nn.Module) -> int:
    """Bytes of a safetensors file holding the trained tensors (what this route must ship), fp32 as trained."""
    from safetensors.torch import save_file

    tensors = {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trained.safetensors")
        save_file(tensors, path)
        return os.path.getsize(path)


def word_accuracy(prediction: str, target: str) -> float:
    """Fraction of the target's words that the prediction has at the same position (partial credit for a
    translation: 5 of 6 words right scores 0.83 where exact match scores 0). Punctuation and case are ignored."""
    def words(text):
        return [w.strip(".,!?;:").lower() for w in text.split()]

    got, want = words(prediction), words(target)
    return sum(g == w for g, w in zip(got, want, strict=False)) / len(want) if want else float(not got)


def run_route(train_examples: list[dict], test_examples: list[dict], *, route: str = "lora", r: int = 8,
              lora_alpha: float | None = None, target_modules="all-linear", steps: int = 24, batch_size: int = 8,
              lr: float = 1e-3, embedding_lr: float = 1e-4, warmup_steps: int = 2, seed: int = 0, pretrain_text=(), pretrain_steps: int = 0,
              max_new_tokens: int = 40, keep_predictions: int = 8, model_name: str = pretrained.DEFAULT_MODEL,
              loader=None, device=None) -> dict:
    """One run end to end (see the module docstring); a JSON-able row. A diverged run has ``diverged`` set and
    no scores. ``lr`` is the LoRA (or full fine-tuning) learning rate; ``embedding_lr`` the trained embedding's
    in "lora+embeddings" (a full weight matrix wants full fine-tuning's smaller rate). ``loader(name) -> (model, tokenizer)`` replaces ``load_model`` (tests pass a tiny model)."""
    if pretrain_steps and not pretrain_text:
        raise ValueError("pretrain_steps > 0 needs pretrain_text (a list of raw-text strings), e.g. "
                         "newlang.veldaran_corpus(2000).")
    start = time.perf_counter()
    device = torch.device(device) if device is not None else get_device()
    precision = precision_policy(device)
    model, tok = (loader or (lambda name: pretrained.load_model(name, verbose=False)))(model_name)
    model = model.to(dtype=precision.dtype)
    seed_everything(seed)  # the A matrices' initialisation
    trainable = prepare_route(model, route, r, 2.0 * r if lora_alpha is None else lora_alpha, target_modules)
    model.to(device)
    row = {"route": route, "r": r if route != "full" else None, "steps": steps, "pretrain_steps": pretrain_steps,
           "trainable_params": trainable, "n_train": len(train_examples), "diverged": None}

    embedding = model.get_input_embeddings().weight

    def stage(examples, n_steps):
        params = [p for p in model.parameters() if p.requires_grad and (route != "lora+embeddings" or p is not embedding)]
        groups = [{"params": params, "lr": lr}] + ([{"params": [embedding], "lr": embedding_lr}]
                                                  if route == "lora+embeddings" else [])
        optimizer = torch.optim.AdamW(groups)
        result = train(model, tok, examples, steps=n_steps, batch_size=batch_size, warmup_steps=min(warmup_steps,
                       n_steps - 1), seed=seed, precision=precision, device=device, optimizer=optimizer,
                       progress=False)
        return result, optimizer

    try:
        if pretrain_steps:
            cpt, _ = stage([{"text": t} for t in pretrain_text], pretrain_steps)
            row["pretrain_time_s"] = cpt.train_time_s
            row["pretrain_final_loss"] = cpt.history[-1]["loss"]
        result, optimizer = stage(train_examples, steps)
    except TrainingDiverged as e:
        row.update(diverged=str(e), wall_time_s=time.perf_counter() - start)
        return row
    state = training_state_bytes(model, optimizer)
    metrics = evaluate(model, tok, test_examples, max_new_tokens=max_new_tokens, batch_size=batch_size)
    predictions = metrics.pop("predictions")
    row.update(train_time_s=result.train_time_s + row.get("pretrain_time_s", 0.0),
               tokens_per_s=result.tokens_per_s, peak_gpu_memory_bytes=result.peak_memory_bytes,
               training_state_bytes=state["total"], file_bytes=saved_bytes(model),
               final_loss=result.history[-1]["loss"], losses=[h["loss"] for h in result.history],
               answer_loss=validation_loss(model, tok, test_examples, batch_size, precision),
               word_accuracy=sum(word_accuracy(p, ex["target"]) for p, ex in zip(predictions, test_examples, strict=True))
               / len(test_examples), predictions=predictions[:keep_predictions], **metrics)
    row["wall_time_s"] = time.perf_counter() - start
    return row


def paged_optimizer_peak(steps: int = 20, batch_size: int = 8, seq_len: int = 256, loader=None) -> dict:
    """GPU memory and time of ``steps`` full fine-tuning steps of SmolLM2 (bf16) with three optimizers:
    ``torch.optim.AdamW`` (its two states in the parameters' bf16), bitsandbytes' ``AdamW32bit`` (fp32 states
    in PyTorch's allocator) and ``PagedAdamW`` (the same fp32 states in CUDA unified memory, which the driver
    moves to CPU RAM when the GPU runs short). Per optimizer: ``peak_allocated_bytes``, PyTorch's allocator
    only, which never sees the paged states; ``device_added_bytes``, what the whole device holds after the
    steps beyond what it held before the model was loaded (paged states included while they sit on the GPU;
    bitsandbytes keeps them until the process ends, so they are counted once, in PagedAdamW's run, which comes
    last); ``s_per_step``, the mean of the steps after the first (the first also allocates the states and warms
    the kernels: ``first_step_s``). On the CPU: ``NoGPUError`` (paging is between GPU and CPU memory)."""
    if not torch.cuda.is_available():
        raise NoGPUError(gpu_message("A paged optimizer"))
    if steps < 2:
        raise ValueError(f"steps must be at least 2 (the first is timed apart), got {steps}.")
    import bitsandbytes as bnb

    optimizers = {"AdamW": torch.optim.AdamW, "AdamW32bit": bnb.optim.AdamW32bit, "PagedAdamW": bnb.optim.PagedAdamW}
    out = {}
    for name, optimizer_class in optimizers.items():
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info()  # the whole device, unified-memory pages on it included
        used_before = total - free
        model, _ = (loader or (lambda n: pretrained.load_model(n, verbose=False)))(pretrained.DEFAULT_MODEL)
        model = model.to("cuda", dtype=torch.bfloat16)
        full_finetune_setup(model)
        optimizer = optimizer_class(model.parameters(), lr=1e-5)
        ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), device="cuda",
                            generator=torch.Generator("cuda").manual_seed(0))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        free, total = torch.cuda.mem_get_info()
        out[name] = {"peak_allocated_bytes": torch.cuda.max_memory_allocated(),
                     "device_added_bytes": total - free - used_before,
                     "s_per_step": sum(times[1:]) / (steps - 1), "first_step_s": times[0]}
        del model, optimizer
    torch.cuda.empty_cache()
    return out
