"""Data-parallel LoRA training on PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel`` (DDP).

``torchrun --nproc_per_node=N -m lora_edu.cli finetune ...`` starts N copies of the same program; torchrun
gives each one the environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` (``accelerate launch --multi_gpu`` sets the same ones, through the same launcher). This
module turns them into a ``World`` and holds the pieces that ``lora_edu.training.train`` and the CLI need:

- ``init_world`` / ``shutdown``: the process group, gloo on the CPU and nccl on CUDA GPUs, with a timeout, so
  a rank that is stuck or dead ends the run with an error instead of a hang;
- ``check_global_batch`` and ``shard``: ``--batch-size`` is the global batch; rank k trains on the k-th
  contiguous slice of it (global batch 8 on 2 ranks: 4 + 4 examples), so every step sees the same examples as
  one process would;
- ``wrap_model``: DDP over the model; DDP registers only parameters with ``requires_grad``, so only the
  LoRA gradients (A and B) are all-reduced, never the frozen base;
- ``barrier`` (which names the late rank on gloo), ``all_reduce_sum``, and ``claim_output_dir``: a lock file
  that stops two runs from writing the same output folder (rank 0 alone writes; the others wait).

DDP: Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", arXiv
2006.15704. LoRA: Hu et al. 2021, arXiv 2106.09685. Explained in notebooks/08_gpu_finetune.ipynb ("Scaling
out"), and in the README's "Scaling out" section (FSDP, DeepSpeed, TRL).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

BACKENDS = ("auto", "gloo", "nccl")
DEFAULT_TIMEOUT_S = 900.0  # a collective or barrier waits this long for the other ranks, then raises
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """A distributed run cannot start or go on (a rank is missing, stuck or failed); the message says why."""


@dataclass(frozen=True)
class World:
    """This process's place in a distributed run: rank ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates and writes; the others wait for it at a barrier."""
        return self.rank == 0


# --- the launch -------------------------------------------------------------------------------------------
def launched(env=None) -> bool:
    """True when a launcher (torchrun, ``accelerate launch --multi_gpu``) started this process."""
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


def _env_int(env, name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise DistributedError(f"The launcher set {sorted(k for k in LAUNCH_VARIABLES if k in env)} but "
                               f"{name}={env.get(name)!r} is missing or not an integer. Start the run with "
                               "torchrun --nproc_per_node=N (it sets all of RANK, WORLD_SIZE, LOCAL_RANK, "
                               "MASTER_ADDR, MASTER_PORT).") from None


def world_size_from_env(env=None) -> int:
    """The number of processes in this run: ``WORLD_SIZE`` under a launcher, else 1."""
    env = os.environ if env is None else env
    return _env_int(env, "WORLD_SIZE") if launched(env) else 1


def check_global_batch(batch_size: int, world_size: int) -> int:
    """The examples per rank; ValueError (problem and fix) unless ``batch_size`` splits evenly over the ranks."""
    if world_size > batch_size:
        raise ValueError(f"--batch-size {batch_size} is the global batch, split across {world_size} processes, "
                         f"so {world_size - batch_size} of them would get no example. To fix: --batch-size "
                         f"{world_size} (or a multiple of it), or launch {batch_size} processes "
                         f"(torchrun --nproc_per_node={batch_size}).")
    if batch_size % world_size:
        lower, upper = batch_size - batch_size % world_size, batch_size + world_size - batch_size % world_size
        raise ValueError(f"--batch-size {batch_size} is the global batch and must split evenly over the "
                         f"{world_size} processes ({batch_size} / {world_size} is not a whole number). To fix: "
                         f"--batch-size {lower} or {upper}.")
    return batch_size // world_size


def resolve_backend(backend: str = "auto", local_world_size: int = 1) -> str:
    """"auto" -> nccl with CUDA, else gloo; ValueError (with the fix) for a backend this machine lacks."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if not dist.is_available():
        raise ValueError("This PyTorch build has no torch.distributed, so it cannot run on several processes. "
                         "To fix: install the standard PyTorch wheel from pytorch.org, or run without torchrun.")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "gloo" and not dist.is_gloo_available():
        raise ValueError("The gloo backend (for the CPU) is not in this PyTorch build. To fix: install the "
                         "standard PyTorch wheel from pytorch.org.")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("The nccl backend needs CUDA GPUs, and this machine has none "
                             "(torch.cuda.is_available() is False). To fix: --backend gloo (the CPU backend), "
                             "or --backend auto, which picks gloo here.")
        if not dist.is_nccl_available():
            raise ValueError("This PyTorch build has no nccl backend. To fix: --backend gloo, or install a "
                             "CUDA build of PyTorch.")
        if local_world_size > torch.cuda.device_count():
            raise ValueError(f"nccl needs one GPU per process: {local_world_size} processes on this machine but "
                             f"{torch.cuda.device_count()} GPU(s). To fix: torchrun "
                             f"--nproc_per_node={torch.cuda.device_count()}, or --backend gloo.")
    return backend


def init_world(backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S, env=None) -> World | None:
    """Join the process group a launcher set up; ``None`` when this is an ordinary single-process run.

    Every check that needs no other process (variables, backend, timeout) comes first, so a bad launch fails
    at once on every rank with the same message.
    """
    env = os.environ if env is None else env
    if not launched(env):
        return None
    if not timeout_s > 0:
        raise ValueError(f"the distributed timeout must be > 0 seconds, got {timeout_s!r}.")
    rank, world_size = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    local_rank = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    local_world_size = _env_int(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else world_size
    backend = resolve_backend(backend, local_world_size)
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # one GPU per rank, chosen by the rank's place on its machine
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
    return World(rank, world_size, local_rank, backend, device, float(timeout_s))


def shutdown(world: World | None) -> None:
    """Leave the process group (a no-op for a single-process run or after a failed start)."""
    if world is not None and dist.is_initialized():
        dist.destroy_process_group()


# --- each step --------------------------------------------------------------------------------------------
def shard(items: Sequence, world: World | None) -> list:
    """This rank's contiguous slice of a global batch: rank k of W gets items[k*n/W : (k+1)*n/W]."""
    if world is None:
        return list(items)
    per_rank = check_global_batch(len(items), world.world_size)
    return list(items[world.rank * per_rank:(world.rank + 1) * per_rank])


def wrap_model(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """``DistributedDataParallel(model)``: broadcasts rank 0's weights, then all-reduces the LoRA grads only.

    ``find_unused_parameters`` stays False: every A and B is used in every forward, and True would cost an
    extra graph traversal per step (PEFT PR #2308 sets it False for the same reason).
    """
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [world.device.index] if world.device.type == "cuda" else None  # None: CPU, gloo
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=False)


def all_reduce_sum(values: Sequence[float], world: World) -> list[float]:
    """The sum over all ranks of each value (one small all-reduce: e.g. a loss and a token count)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64,
                     device=world.device if world.backend == "nccl" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def barrier(world: World | None, where: str) -> None:
    """Wait until every rank reaches this point; DistributedError naming the late rank after the timeout."""
    if world is None:
        return
    try:
        if world.backend == "gloo":  # monitored_barrier names the rank that did not arrive (gloo only)
            dist.monitored_barrier(timeout=timedelta(seconds=world.timeout_s))
        else:  # nccl: name this rank's GPU, so the barrier does not have to guess it
            dist.barrier(device_ids=[world.device.index])
    except RuntimeError as e:
        raise DistributedError(f"rank {world.rank} of {world.world_size} waited {world.timeout_s:g} s at "
                               f"'{where}' and another rank never arrived (it is stuck or has died): {e}. "
                               "Nothing was written.") from e


def failure_message(world: World, error: BaseException) -> str:
    """One line for a rank that failed: which rank, what, and what happens next."""
    hint = ""
    if "timed out" in str(error).lower() or "timeout" in str(error).lower():
        hint = (f" Another rank did not answer within {world.timeout_s:g} s (--dist-timeout): look for its "
                "error above, or raise the timeout if rank 0's evaluation is slow.")
    return (f"rank {world.rank} of {world.world_size} failed: {type(error).__name__}: {error}.{hint} torchrun "
            "stops the other ranks; the output folder was not written (it is written only at the very end).")


# --- one writer ---------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 checks that the process exists, and sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        return True
    return True


@contextmanager
def claim_output_dir(path: Path) -> Iterator[Path]:
    """Hold ``.<name>.lock`` beside ``path`` for the whole run, so a second run into the same folder stops.

    The lock file holds "host pid"; one left by a process that has died on this host is taken over. It is
    created with O_EXCL, which is atomic, so two runs starting together cannot both get it.
    """
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                host, pid = lock.read_text().split()
                stale = host == socket.gethostname() and not _alive(int(pid))
            except (OSError, ValueError):  # vanished or half-written just now: treat as held, try once more
                host, pid, stale = "?", "?", False
            if attempt == 0 and stale:
                lock.unlink(missing_ok=True)
                continue
            raise ValueError(f"Another run (process {pid} on {host}) is writing to --output-dir {path} (lock "
                             f"file {lock}). To fix: wait for it to finish, or pick another --output-dir; if no "
                             "such run is alive, delete the lock file.") from None
    with os.fdopen(fd, "w") as f:
        f.write(me)
    try:
        yield path
    finally:
        try:
            if lock.read_text() == me:  # never remove a lock that another run has taken over since
                lock.unlink()
        except OSError:
            pass
