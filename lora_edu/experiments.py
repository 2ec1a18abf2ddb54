"""Fine-tuning experiments: one configuration end to end, and the rank sweep built on it.

``run_config(RunConfig(...))`` loads the base in the device's precision (``runtime.precision_policy``: bf16 on
Ampere/Hopper, fp16 + GradScaler on a T4, fp32 on the CPU), adds LoRA or QLoRA, measures the test examples,
trains (``lora_edu.training.train``), measures again, and returns a ``RunResult`` whose ``row`` is one line of a
results table (wall time, tokens/s, peak GPU memory, exact match and answer loss before and after, trainable
parameters). ``rank_sweep`` runs it over ranks x tasks x seeds. ``lora-edu finetune`` (lora_edu/cli.py) uses
its two halves, ``build_model`` and ``fit_and_measure``. Explained in notebooks/08_gpu_finetune.ipynb.

LoRA: Hu et al. 2021, arXiv 2106.09685 (section 7.2, Table 6: accuracy against the rank). QLoRA: Dettmers et
al. 2023, arXiv 2305.14314. rsLoRA: Kalajdzievski 2023, arXiv 2312.03732 (scaling alpha / sqrt(r)).
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from . import pretrained
from .config import LoraConfig
from .data import TASKS, load_task
from .runtime import NoGPUError, Precision, get_device, gpu_message, precision_policy, seed_everything

METHODS = ("lora", "qlora", "full")  # "full": every weight trains (the baseline of notebook 11)
LARGER_MODEL = "HuggingFaceTB/SmolLM2-360M-Instruct"  # offered on a GPU (from the hub) in notebook 08


class OutOfGPUMemory(RuntimeError):
    """The GPU ran out of memory during a run; the message names the batch size to try next."""


@dataclass(frozen=True)
class RunConfig:
    """One fine-tuning run. The defaults are notebook 04's measured recipe (r=8, alpha=16, all-linear)."""

    task: str = "format"
    model_name: str = pretrained.DEFAULT_MODEL
    method: str = "lora"  # "lora": frozen base in the device's precision; "qlora": frozen base in NF4
    r: int = 8
    lora_alpha: float = 16.0
    use_rslora: bool = False
    use_dora: bool = False
    target_modules: str | tuple = "all-linear"
    steps: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 4
    seed: int = 0
    eval_examples: int = 40  # the first N test examples, scored by greedy generation; 0 skips evaluation
    max_new_tokens: int = 40
    measure_before: bool = True  # False: skip the "before" measurement (a sweep measures the base once)
    n_facts: int = 0  # knowledge task: train and test on the first N of its 200 facts only (0: all of them)

    @property
    def label(self) -> str:
        rs = ", rsLoRA" if self.use_rslora else ""
        facts = f" ({self.n_facts} facts)" if self.n_facts else ""
        if self.method == "full":
            return f"{self.task}{facts} · full fine-tuning"
        method = "QLoRA" if self.method == "qlora" else "LoRA"
        return f"{self.task}{facts} · {method} r={self.r}, alpha={self.lora_alpha:g}{rs}"

    def lora_config(self) -> LoraConfig:
        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, target_modules=targets,
                          use_rslora=self.use_rslora, use_dora=self.use_dora)


@dataclass
class RunResult:
    """What ``run_config`` measured: ``row`` (the table line), the ``evaluate`` outputs, the ``TrainResult``."""

    config: RunConfig
    row: dict
    before: dict | None = None  # evaluate(...) before training, predictions included
    after: dict | None = None
    train: object = None  # lora_edu.training.TrainResult
    diverged: str | None = None  # TrainingDiverged's message, else None
    model: object = field(default=None, repr=False)  # kept only with keep_model=True
    tokenizer: object = field(default=None, repr=False)


def task_split(cfg: RunConfig, split: str) -> list[dict]:
    """The examples of ``cfg.task``'s ``split``; with ``cfg.n_facts`` only those of the first N facts (sorted ids).

    Fewer facts make the knowledge task learnable on a CPU budget: 16 steps of 8 cannot even show each of the
    600 training questions once, while 20 facts (60 questions) are seen several times (notebook 11).
    """
    examples = load_task(cfg.task, split)
    if not cfg.n_facts:
        return examples
    keep = set(sorted({ex["fact_id"] for ex in examples})[:cfg.n_facts])
    return [ex for ex in examples if ex["fact_id"] in keep]


# --- checks before any work ---------------------------------------------------------------------------------
def check_config(cfg: RunConfig) -> None:
    """Raise ValueError (problem and fix) for what can be seen before loading the model."""
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}.")
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {cfg.method!r}: 'lora' trains adapters on the "
                         "base as loaded, 'qlora' on a base quantized to NF4.")
    if cfg.method == "qlora" and cfg.use_dora:
        raise ValueError("method='qlora' with use_dora=True is not supported; use method='lora' for DoRA.")
    if isinstance(cfg.n_facts, bool) or not isinstance(cfg.n_facts, int) or cfg.n_facts < 0:
        raise ValueError(f"n_facts must be an int >= 0 (0: all facts), got {cfg.n_facts!r}.")
    if cfg.n_facts and cfg.task != "knowledge":
        raise ValueError(f"n_facts applies to the knowledge task only (the {cfg.task} task has no facts); use 0.")
    n_test = len(task_split(cfg, "test"))
    if not 0 <= cfg.eval_examples <= n_test:
        raise ValueError(f"eval_examples must be in [0, {n_test}] (the {cfg.task} test split has {n_test} "
                         f"examples), got {cfg.eval_examples}.")
    if cfg.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {cfg.max_new_tokens}.")
    cfg.lora_config()  # LoraConfig checks r, lora_alpha and target_modules


def check_model_available(name: str, device=None) -> None:
    """Before any run: ``ModelSourceError`` if no source can serve ``name`` (offline, not cached), then
    ``NoGPUError`` for a model other than the default on the CPU (the runs would take hours there)."""
    pretrained.check_source(name)
    device = get_device() if device is None else torch.device(device)
    if name != pretrained.DEFAULT_MODEL and device.type != "cuda":
        raise NoGPUError(gpu_message(f"Fine-tuning {name}") + f" On the CPU, use {pretrained.DEFAULT_MODEL}.")


def oom_message(cfg: RunConfig) -> str:
    """The advice for an out-of-memory error at ``cfg.batch_size``: halve it (or, at 1, shrink the model)."""
    fix = (f"halve the batch size: batch_size={cfg.batch_size // 2} (halve it again if that fails too); QLoRA "
           "(method='qlora') and the smaller model need less memory as well" if cfg.batch_size > 1 else
           "batch_size is already 1: use method='qlora', a smaller model, or fewer eval examples")
    return (f"The GPU ran out of memory in '{cfg.label}' at batch_size={cfg.batch_size}. To fix: {fix}. The "
            "memory of this run has been freed; if the next run fails too, restart the runtime (Colab: "
            "Runtime > Restart session) and run the notebook again.")


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks, so the next run's peak memory is its own."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- the two halves of a run --------------------------------------------------------------------------------
def build_model(cfg: RunConfig, device=None, precision: Precision | None = None, loader=None):
    """(model, tokenizer): the base in ``precision.dtype`` with LoRA or QLoRA added, on ``device``.

    ``loader(name) -> (model, tokenizer)`` loads the base (default: ``load_model``; tests pass a tiny model).
    The adapters are fp32 even on a 16-bit base (LoraLinear's rule), which GradScaler needs on a T4.
    """
    from .baselines import full_finetune_setup
    from .model import inject_lora
    from .qlora import prepare_qlora

    device = torch.device(device) if device is not None else get_device()
    precision = precision or precision_policy(device)
    model, tokenizer = (loader or (lambda name: pretrained.load_model(name, verbose=False)))(cfg.model_name)
    model = model.to(dtype=precision.dtype)  # bf16 / fp16 on a GPU, fp32 on the CPU
    seed_everything(cfg.seed)  # the A matrices' initialisation
    if cfg.method == "qlora":
        prepare_qlora(model, cfg.lora_config(), compute_dtype=precision.dtype)  # quantizes on the CPU
    elif cfg.method == "full":
        full_finetune_setup(model)  # r, lora_alpha and target_modules are unused
    else:
        inject_lora(model, cfg.lora_config())
    return model.to(device), tokenizer


def fit_and_measure(model, tokenizer, cfg: RunConfig, precision: Precision | None = None, log=print,
                    progress: bool = False, world=None) -> RunResult:
    """Measure before (if ``cfg.measure_before``), train, measure after, on the first ``cfg.eval_examples``
    test examples: exact match (greedy generation) and answer loss (``validation_loss``: cross-entropy per
    answer token). A diverged run has no "after"; out of GPU memory raises ``OutOfGPUMemory``. Under
    torchrun (``world``, a ``distributed.World``) every rank trains and rank 0 alone measures."""
    from . import training as train_module
    from .distributed import barrier
    from .evaluation import evaluate
    from .model import trainable_parameters

    device = next(model.parameters()).device
    precision = precision or precision_policy(device)
    train_module._check_arguments(model, cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup_steps, "linear", 1.0, None)
    test_set = task_split(cfg, "test")[:cfg.eval_examples]
    if world is not None and not world.is_main:
        test_set = []  # rank 0 measures; the other ranks wait for it at the barriers
    out = RunResult(cfg, row={})
    loss = {}

    def measure(when: str):
        log(f"Evaluating {when} training on {len(test_set)} test examples (greedy generation) ...")
        loss[when] = train_module.validation_loss(model, tokenizer, test_set, cfg.batch_size, precision)
        return evaluate(model, tokenizer, test_set, task=cfg.task, max_new_tokens=cfg.max_new_tokens,
                        batch_size=cfg.batch_size)

    out_of_memory = False
    try:  # B = 0 at the start, so the model with its new adapter *is* the base model: this measures the base
        out.before = measure("before") if test_set and cfg.measure_before else None
        barrier(world, "evaluation before training")
        try:
            out.train = train_module.train(model, tokenizer, task_split(cfg, "train"), steps=cfg.steps,
                                           batch_size=cfg.batch_size, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                                           seed=cfg.seed, precision=precision, device=device, progress=progress,
                                           world=world)
        except train_module.TrainingDiverged as e:
            out.diverged, out.train = str(e), e.result
        out.after = measure("after") if test_set and out.diverged is None else None
        barrier(world, "evaluation after training")
    except torch.OutOfMemoryError:
        out_of_memory = True
    if out_of_memory:  # raised here, outside the except block, so no traceback keeps the full GPU alive
        raise OutOfGPUMemory(oom_message(cfg))
    trainable, total = trainable_parameters(model)  # QLoRA's 4-bit weights counted, as PEFT counts them
    out.row = make_row(cfg, out, trainable, total, loss)
    return out


def make_row(cfg: RunConfig, res: RunResult, trainable: int, total: int, loss: dict) -> dict:
    """One table line: the configuration, then what was measured (None where not measured)."""
    history = res.train.history if res.train is not None else []

    def get(metrics, key):
        value = None if metrics is None else metrics.get(key)
        return sum(value.values()) / len(value) if isinstance(value, dict) else value  # fields: the mean

    row = {k: v for k, v in asdict(cfg).items() if k not in ("measure_before", "target_modules")}
    row.update(label=cfg.label, trainable_params=trainable, total_params=total, steps_done=len(history),
               n_eval=(res.after or res.before or {}).get("n", 0), wall_time_s=None,  # set by run_config
               final_loss=history[-1]["loss"] if history else None, diverged=res.diverged,
               **{k: getattr(res.train, k, None) for k in ("train_time_s", "tokens_per_s", "peak_memory_bytes",
                                                           "device", "precision")})
    for when, metrics in (("before", res.before), ("after", res.after)):
        row.update({f"exact_match_{when}": get(metrics, "exact_match"), f"answer_loss_{when}": loss.get(when),
                    f"field_accuracy_{when}": get(metrics, "field_accuracy")})
    return row


# --- whole runs -------------------------------------------------------------------------------------------------
def run_config(cfg: RunConfig, *, device=None, precision: Precision | None = None, loader=None, save_to=None,
               keep_model: bool = False, log=print, progress: bool = False) -> RunResult:
    """Run one configuration end to end (see the module docstring); ``row["wall_time_s"]`` is the whole run.

    ``save_to``: a folder for the trained adapter (PEFT's format). ``keep_model``: keep the model in the
    result (for merging); otherwise it is dropped and its GPU memory freed before the next run.
    """
    from .io import save_adapter

    start = time.perf_counter()
    check_config(cfg)
    if save_to is not None and cfg.method == "full":
        raise ValueError("save_to saves a LoRA adapter, and method='full' trains no adapter. Fix: keep_model=True "
                         "and model.save_pretrained(folder) for a full fine-tune.")
    model, tokenizer = build_model(cfg, device, precision, loader)
    message = None
    try:
        res = fit_and_measure(model, tokenizer, cfg, precision, log, progress)
    except OutOfGPUMemory as e:
        message = str(e)
    if message is not None:  # drop the model first, then raise a fresh error that holds no frames
        del model
        free_memory()
        raise OutOfGPUMemory(message)
    if save_to is not None:
        save_adapter(model, save_to, base_model_name_or_path=cfg.model_name)
    if keep_model:
        res.model, res.tokenizer = model, tokenizer
    else:
        del model
        free_memory()
    res.row["wall_time_s"] = time.perf_counter() - start
    return res


BEFORE_KEYS = ("exact_match_before", "field_accuracy_before", "answer_loss_before")


def rank_sweep(templates: dict, ranks, seeds=(0,), rslora_ranks=(), alpha_per_rank: float = 2.0, *,
               device=None, loader=None, log=print, rows: list | None = None) -> list[dict]:
    """Rows of ``run_config`` for every task in ``templates`` (task -> RunConfig with its steps and eval
    sizes), rank in ``ranks`` (lora_alpha = alpha_per_rank * r) and seed; plus rsLoRA at ``rslora_ranks``.

    Everything but r, lora_alpha and use_rslora stays as in the task's template. The base model is measured
    once per task (B = 0 makes every fresh adapter the base model) and its numbers copied into each row.
    ``rows``: a list that each finished row is appended to at once, so a sweep stopped halfway (interrupted,
    out of memory) keeps what it finished; called again with the same list, it runs only the missing runs.
    """
    ranks, seeds, rslora_ranks = list(ranks), list(seeds), list(rslora_ranks)
    if not ranks or not seeds or not templates:
        raise ValueError("rank_sweep needs at least one task template, one rank and one seed.")
    rows = [] if rows is None else rows
    done = {(row["task"], row["r"], row["use_rslora"], row["seed"]) for row in rows}
    plan = [(task, seed, r, rs) for task in templates for seed in seeds
            for r, rs in [(r, False) for r in ranks] + [(r, True) for r in rslora_ranks]]
    try:
        for task, seed, r, rslora in plan:
            if (task, r, rslora, seed) in done:
                continue
            base = next(({k: row[k] for k in BEFORE_KEYS} for row in rows if row["task"] == task), None)
            cfg = replace(templates[task], task=task, r=r, lora_alpha=alpha_per_rank * r, use_rslora=rslora,
                          seed=seed, measure_before=base is None)
            row = run_config(cfg, device=device, loader=loader, log=lambda *a: None).row
            row.update(base or {})
            rows.append(row)
            em, loss = row["exact_match_after"], row["answer_loss_after"]
            log(f"{cfg.label}, seed {seed}: " + ("diverged" if row["diverged"] else "not evaluated" if em is None
                else f"exact match {em:.0%}, answer loss {loss:.3f}") + f" ({row['wall_time_s']:.0f} s)")
    except (KeyboardInterrupt, OutOfGPUMemory):
        log(f"Sweep stopped after {len(rows)} of {len(plan)} runs: the finished rows are kept in the list passed "
            "as rows=; run the same call again with it to finish the rest.")
        raise
    return rows


# --- reading the results -----------------------------------------------------------------------------------------
def sweep_means(rows: list[dict], task: str, metric: str, use_rslora: bool = False) -> dict[int, float]:
    """rank -> mean of ``metric`` over seeds, for one task and scaling (diverged or unmeasured runs skipped)."""
    values: dict = {}
    for row in rows:
        if row["task"] == task and row["use_rslora"] == use_rslora and row.get(metric) is not None:
            values.setdefault(row["r"], []).append(float(row[metric]))
    return {r: sum(v) / len(v) for r, v in sorted(values.items())}


def smallest_sufficient_rank(rows: list[dict], task: str, metric: str, tolerance: float,
                             higher_is_better: bool = True) -> tuple[int, int, float] | None:
    """(smallest r within ``tolerance`` of the best mean, best r, best mean), for alpha = 2r LoRA rows."""
    means = sweep_means(rows, task, metric)
    if not means:
        return None
    best_r = (max if higher_is_better else min)(means, key=means.get)
    best = means[best_r]
    good = [r for r, v in means.items() if (best - v if higher_is_better else v - best) <= tolerance]
    return min(good), best_r, best
