"""``lora-edu finetune``: fine-tune SmolLM2 with LoRA on a course task from the command line.

One command does what notebook 04 does step by step: load the base model, measure it on the test split, inject
LoRA (``inject_lora``), train (``lora_edu.training.train``, with a progress bar), measure again, and write the
adapter in PEFT's format (``save_adapter``) with a ``metrics.json`` beside it; ``--merge`` also writes the
merged model (``merge_and_unload`` then transformers' ``save_pretrained``). Everything is written into a
temporary folder next to ``--output-dir`` and renamed into place at the end, so an interrupted run never
leaves a half-written output folder. The defaults are the recipe measured in notebook 04 (r=8, alpha=16, all
seven linear layer types, 40 steps of batch 8, lr 1e-3 with 4 warmup steps). LoRA: Hu et al. 2021,
arXiv 2106.09685. Notebook 08 builds on this command.

Exit codes: 0 done; 2 bad input (an argparse error, with the problem and the fix); 1 training diverged
(the adapter from the last good step is still written, and metrics.json says what happened) or the GPU ran out
of memory (nothing written; the message says which --batch-size to try); 130 interrupted with Ctrl-C (nothing
written).

Under ``torchrun --nproc_per_node=N -m lora_edu.cli -- finetune ...`` (or ``accelerate launch --multi_gpu``)
every rank trains its slice of each global batch with DDP, and rank 0 alone evaluates and writes
(``lora_edu.distributed``; README "Scaling out").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .config import check_lora_hyperparameters
from .data import FORMAT_KEYS, TASKS, load_task
from .distributed import BACKENDS, DEFAULT_TIMEOUT_S, launched

DEFAULTS = {"r": 8, "alpha": 16.0, "target_modules": "all-linear", "steps": 40, "batch_size": 8, "lr": 1e-3,
            "warmup_steps": 4, "seed": 0, "eval_examples": 40, "max_new_tokens": 40}
MAX_SEED = 2 ** 32 - 1  # np.random.seed refuses anything outside [0, 2**32 - 1]
ADAPTER_CONFIG = "adapter_config.json"  # the file that marks a folder as an adapter (ours or PEFT's)


def load_base_model(name: str):
    """(model, tokenizer) for ``name`` (a seam: tests replace it with a tiny model)."""
    from .pretrained import load_model

    return load_model(name)


# --- arguments ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .pretrained import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="lora-edu", description="Command-line tools of the lora_edu course.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ft = sub.add_parser(
        "finetune", help="fine-tune SmolLM2 with LoRA on a course task; write the adapter and metrics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a chat model with LoRA on one of the course tasks, measure it before and\n"
                    "after (greedy generation on the test split), and write the adapter (PEFT's format)\n"
                    "and metrics.json into --output-dir.",
        epilog="The defaults are the recipe measured in notebook 04: 40 steps of batch 8, a few minutes on a\n"
               "2-core CPU, took the format task from 0% to 100% exact match.\n\nexamples:\n  lora-edu finetune --task format --output-dir adapters/format\n"
               "  lora-edu finetune --task knowledge --r 32 --alpha 64 --steps 200 --output-dir "
               "adapters/knowledge\n\nload the adapter afterwards with lora_edu.load_adapter(model, path)\n"
               "or peft.PeftModel.from_pretrained(model, path).")
    ft.add_argument("--task", required=True, choices=TASKS, metavar="{" + ",".join(TASKS) + "}",
                    help="format: a sentence about a person -> one line of JSON; knowledge: facts about an "
                         "invented world")
    ft.add_argument("--output-dir", required=True, type=Path,
                    help="folder for adapter_config.json, adapter_model.safetensors and metrics.json; it must "
                         "not exist yet or be empty (see --overwrite)")
    ft.add_argument("--overwrite", action="store_true",
                    help="replace the contents of an --output-dir that an earlier run wrote")
    lora = ft.add_argument_group("LoRA")
    lora.add_argument("--r", type=int, default=DEFAULTS["r"], help="rank of the update (default: %(default)s)")
    lora.add_argument("--alpha", type=float, default=DEFAULTS["alpha"],
                      help="lora_alpha; the update is scaled by alpha / r (default: %(default)s)")
    lora.add_argument("--target-modules", default=DEFAULTS["target_modules"], metavar="NAMES",
                      help="comma-separated module names (e.g. q_proj,v_proj: PEFT's default for Llama) or "
                           "all-linear (every linear layer but the output head; default: %(default)s)")
    lora.add_argument("--rslora", action="store_true", help="scale by alpha / sqrt(r) instead (rsLoRA)")
    lora.add_argument("--dora", action="store_true", help="train a DoRA adapter (magnitude and direction)")
    opt = ft.add_argument_group("training")
    opt.add_argument("--steps", type=int, default=DEFAULTS["steps"], help="optimizer steps (default: %(default)s)")
    opt.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                     help="examples per optimizer step, also per generation batch; under torchrun this is "
                          "the global batch, split evenly across the processes (default: %(default)s)")
    opt.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="peak learning rate of AdamW "
                     "(default: %(default)s), reached after the warmup, then falling linearly")
    opt.add_argument("--warmup-steps", type=int, default=DEFAULTS["warmup_steps"],
                     help="steps of linear warmup (default: %(default)s)")
    opt.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                     help="seed for the adapter's initialisation and the data order (default: %(default)s)")
    ev = ft.add_argument_group("evaluation")
    ev.add_argument("--eval-examples", type=int, default=DEFAULTS["eval_examples"], metavar="N",
                    help="test examples to generate for, before and after training; 0 skips evaluation "
                         "(default: %(default)s)")
    ev.add_argument("--max-new-tokens", type=int, default=DEFAULTS["max_new_tokens"],
                    help="generation limit per answer; format answers are about 30 tokens "
                         "(default: %(default)s)")
    out = ft.add_argument_group("model")
    out.add_argument("--model", default=DEFAULT_MODEL, help="base model: a hub name, or a local folder holding "
                     "a transformers model and its tokenizer (default: %(default)s)")
    out.add_argument("--merge", action="store_true",
                     help="also write the merged model (transformers' save_pretrained) into OUTPUT_DIR/merged")
    dist = ft.add_argument_group("distributed (under torchrun --nproc_per_node=N; ignored otherwise)")
    dist.add_argument("--backend", default="auto", choices=BACKENDS,
                      help="process-group backend: auto picks nccl on CUDA GPUs, gloo on the CPU "
                           "(default: %(default)s)")
    dist.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                      help="how long a rank waits for the others (rank 0 evaluates while they wait) before the "
                           "run stops with an error (default: %(default)g)")
    ft.set_defaults(handler=launch_finetune, subparser=ft)  # errors after parsing show the subcommand's usage
    return parser


def parse_target_modules(text: str | list[str]) -> list[str] | str:
    """"all-linear" stays a string (PEFT's keyword); anything else is a comma-separated list of names (a list
    already parsed comes back as it is, so the arguments can be checked twice)."""
    if isinstance(text, (list, tuple)):
        return list(text)
    if text.strip().lower() == "all-linear":
        return "all-linear"
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ValueError(f"--target-modules {text!r} has an empty name; give names separated by commas, "
                         "e.g. q_proj,v_proj, or all-linear.")
    return names


def check_arguments(args) -> None:
    """Raise ValueError (problem and fix) for every bad value that can be seen before loading the model."""
    for name in ("r", "steps", "batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if not args.alpha > 0:
        raise ValueError(f"--alpha must be > 0 (the update is scaled by alpha / r), got {args.alpha}; "
                         "a common choice is 2 * r.")
    if not math.isfinite(args.alpha):
        raise ValueError(f"--alpha must be finite, got {args.alpha}: an infinite scaling makes every output "
                         "NaN. A common choice is 2 * r.")
    try:  # LoraConfig's rules, e.g. a scaling alpha / r above 65504
        check_lora_hyperparameters(args.r, args.alpha, 0.0, True, args.rslora)
    except ValueError as e:
        raise ValueError(f"--alpha {args.alpha:g} with --r {args.r}: {e}") from None
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ValueError(f"--lr must be > 0 and finite, got {args.lr}; LoRA usually trains at 1e-4 to 1e-3.")
    if not 0 <= args.seed <= MAX_SEED:
        raise ValueError(f"--seed must be in [0, {MAX_SEED}] (NumPy's seed range), got {args.seed}.")
    if not 0 <= args.warmup_steps < args.steps:
        raise ValueError(f"--warmup-steps must be in [0, --steps) = [0, {args.steps}), got {args.warmup_steps}.")
    n_test = len(load_task(args.task, "test"))
    if not 0 <= args.eval_examples <= n_test:
        raise ValueError(f"--eval-examples must be in [0, {n_test}] (the {args.task} test split has {n_test} "
                         f"examples), got {args.eval_examples}.")
    args.target_modules = parse_target_modules(args.target_modules)
    out = args.output_dir = resolve_output_dir(args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} is a file, not a folder; pick a folder name.")
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            raise ValueError(f"--output-dir {out} exists and is not empty; pick a new folder, or pass "
                             "--overwrite to replace an earlier run's output.")
        if not (out / ADAPTER_CONFIG).is_file():
            raise ValueError(f"--output-dir {out} holds no {ADAPTER_CONFIG}, so no earlier run wrote it; "
                             "--overwrite replaces only an adapter folder. Pick a new folder.")


def resolve_output_dir(given: Path) -> Path:
    """The absolute folder ``--output-dir`` names, checked before any work: ".", "" and "x/.." become real
    paths (no stray x/sub for "x/sub/.."), a link becomes its target (the swap keeps the link), and a folder
    the final rename cannot replace (the current folder or one above it) or cannot create is refused."""
    if given.is_symlink() and not given.exists():
        raise ValueError(f"--output-dir {given} is a symbolic link to a missing folder; create its target or "
                         "pick another path.")
    out = given.resolve()
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise ValueError(f"--output-dir {str(given) or '(empty)'} is the current folder (or one that holds it), "
                         "which the run cannot replace when it writes its output. Pick a subfolder, e.g. "
                         "--output-dir adapters/run1.")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--output-dir {given}: {ancestor} is a file, so no folder can be made inside it. "
                         "Pick another path.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--output-dir {given}: the folder {ancestor} is not writable. Pick a folder you can "
                         "write to.")
    return out


# --- the run --------------------------------------------------------------------------------------------
def scores(metrics: dict | None) -> dict | None:
    """The numbers of an ``evaluate`` result (no predictions), with the mean field accuracy added."""
    if metrics is None:
        return None
    out = {k: v for k, v in metrics.items() if k != "predictions"}
    if "field_accuracy" in out:
        out["field_accuracy_mean"] = sum(out["field_accuracy"].values()) / len(out["field_accuracy"])
    return out


def metrics_table(before: dict, after: dict) -> str:
    """A small before/after table of exact match (all, seen, held-out phrasings, each with its n) and field
    accuracy."""
    rows = [("exact match", "exact_match")]
    rows += [(f"  {label} phrasings" + (f" (n={before[f'n_{key}']})" if f"n_{key}" in before else ""),
              f"exact_match_{key}") for label, key in (("seen", "seen"), ("held-out", "held_out"))]
    if "field_accuracy" in before:
        rows += [(f"field accuracy (mean of {len(FORMAT_KEYS)})", "field_accuracy_mean")]  # of the rows below
        rows += [(f"  {k}", ("field_accuracy", k)) for k in FORMAT_KEYS]
        rows += [("valid JSON", "valid_json")]

    def cell(m, key):
        v = m[key[0]][key[1]] if isinstance(key, tuple) else m.get(key)
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [f"{'metric (n=' + str(before['n']) + ')':<28}{'before':>9}{'after':>9}", "-" * 46]
    lines += [f"{label:<28}{cell(before, key):>9}{cell(after, key):>9}" for label, key in rows]
    return "\n".join(lines)


def launch_finetune(args, parser) -> int:
    """``finetune`` on one process, or on each rank under torchrun: join the process group (gloo or nccl, with
    a timeout), let rank 0 alone hold the output folder's lock, run, and leave the group. A rank that fails
    says so on one line and re-raises; torchrun then stops the others and reports the first failure."""
    from contextlib import ExitStack

    from . import distributed

    with ExitStack() as stack:
        try:  # a bad launch is bad input: the same usage error, exit 2, on every rank
            check_arguments(args)  # first: the lock below sits beside the resolved --output-dir
            if distributed.launched():
                distributed.check_global_batch(args.batch_size, distributed.world_size_from_env())
            world = distributed.init_world(args.backend, args.dist_timeout)
            if world is None or world.is_main:
                stack.enter_context(distributed.claim_output_dir(args.output_dir))
        except (ValueError, distributed.DistributedError) as e:
            parser.error(str(e))
        if world is not None:
            print(f"rank {world.rank} of {world.world_size} ({world.backend}, {world.device}): global batch "
                  f"{args.batch_size} = {world.world_size} x {args.batch_size // world.world_size}", flush=True)
        try:
            code = finetune(args, parser, world)
        except Exception as e:
            if world is not None:
                print(f"error: {distributed.failure_message(world, e)}", file=sys.stderr, flush=True)
            raise
    distributed.shutdown(world)
    return code


def finetune(args, parser, world=None) -> int:
    """Run ``lora-edu finetune`` (see the module docstring); returns the exit code.

    The run itself is ``lora_edu.experiments``' ``build_model`` then ``fit_and_measure`` (notebook 08 runs the
    same two through ``run_config``); this function adds the command line: exit codes and the output folder.
    """
    from . import distributed
    from .experiments import OutOfGPUMemory, RunConfig, build_model, fit_and_measure
    from .io import publish_folder, save_adapter
    from .model import check_untied, lora_layers, merge_and_unload, trainable_parameters
    from .pretrained import ModelSourceError

    try:
        check_arguments(args)
        targets = args.target_modules if isinstance(args.target_modules, str) else tuple(args.target_modules)
        config = RunConfig(task=args.task, model_name=args.model, r=args.r, lora_alpha=args.alpha,
                           use_rslora=args.rslora, use_dora=args.dora, target_modules=targets, steps=args.steps,
                           batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, seed=args.seed,
                           eval_examples=args.eval_examples, max_new_tokens=args.max_new_tokens)
        model, tokenizer = build_model(config, loader=load_base_model)  # load, seed, inject LoRA
        if args.merge:  # a tied weight (lm_head = embed_tokens) cannot be merged: say so before training
            check_untied(model, list(lora_layers(model)))
    except (ValueError, TypeError, OSError, ModelSourceError) as e:  # bad input: usage + message, exit 2
        parser.error(str(e))
    trainable, total = trainable_parameters(model)
    print(f"{args.model}: LoRA r={args.r}, alpha={args.alpha:g} on {len(list(lora_layers(model)))} layers; "
          f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%)")
    try:
        run = fit_and_measure(model, tokenizer, config, log=lambda line: print(line, flush=True), progress=True,
                              world=world)
    except OutOfGPUMemory as e:  # nothing written: a smaller batch needs a new run anyway
        print(f"error: {e}", file=sys.stderr)
        return 1
    before, after, result, diverged, row = run.before, run.after, run.train, run.diverged, run.row
    if diverged:
        print(f"error: training diverged: {diverged}", file=sys.stderr)
    if world is not None and not world.is_main:  # rank 0 writes; wait for it, so torchrun ends all together
        distributed.barrier(world, "rank 0 writing the output folder")
        return 1 if diverged else 0
    test_set = load_task(args.task, "test")[:args.eval_examples]
    history = result.history
    metrics = {"task": args.task, "model": args.model,
               "world_size": 1 if world is None else world.world_size,
               "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                             if k not in ("handler", "subparser", "command", "output_dir", "overwrite")},
               "trainable_params": trainable, "total_params": total,
               "train": {"steps_done": len(history), "wall_time_s": result.wall_time_s,
                         "train_time_s": result.train_time_s, "tokens_per_s": result.tokens_per_s,
                         "peak_memory_bytes": result.peak_memory_bytes,
                         "final_loss": history[-1]["loss"] if history else None,
                         "loss": [h["loss"] for h in history], "device": result.device},
               "before": scores(before), "after": scores(after), "diverged": diverged,
               "answer_loss": {"before": row["answer_loss_before"], "after": row["answer_loss_after"]}}
    if before is not None and after is not None:
        metrics["examples"] = [{"prompt": ex["prompt"], "target": ex["target"], "before": b, "after": a}
                               for ex, b, a in zip(test_set[:5], before["predictions"], after["predictions"],
                                                   strict=False)]
    out = args.output_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        save_adapter(model, staging, base_model_name_or_path=args.model)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # staging is the atomic part
        if args.merge and diverged is None:
            merged = merge_and_unload(model)
            merged.save_pretrained(staging / "merged")
            tokenizer.save_pretrained(staging / "merged")
        publish_folder(staging, out)  # renames only; an old output folder comes back if the swap fails
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful rename
    distributed.barrier(world, "rank 0 writing the output folder")  # a no-op on one process
    if diverged is None:
        print(f"Trained {args.steps} steps in {result.train_time_s:.1f} s "
              f"({result.wall_time_s:.1f} s with evaluation); final loss {history[-1]['loss']:.4f}")
    if before is not None and after is not None:
        print(metrics_table(scores(before), scores(after)))
    print(f"Wrote the adapter{' and the merged model' if args.merge and not diverged else ''} and "
          f"metrics.json to {out}")
    return 1 if diverged else 0


def main(argv: list[str] | None = None) -> int:
    if launched():  # under torchrun: @record puts the failing rank's traceback into torchrun's summary
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(_main)(argv)
    return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # torchrun ... -m lora_edu.cli -- finetune ...: some Pythons pass the "--" on
        argv = argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        code = args.handler(args, args.subparser)
    except KeyboardInterrupt:  # Ctrl-C: the output folder is written only at the end, so nothing is half-written
        print(f"\nInterrupted after {time.perf_counter() - start:.0f} s; {args.output_dir} was not written.",
              file=sys.stderr)
        return 130  # the shell's code for SIGINT
    print(f"Done in {time.perf_counter() - start:.1f} s.")
    return code


if __name__ == "__main__":
    sys.exit(main())
