"""``LoraConfig``: the LoRA hyperparameters, with Hugging Face PEFT's names, defaults and meanings.

LoRA (Hu et al. 2021, arXiv 2106.09685, section 4.1) learns an update ``delta_W = (lora_alpha / r) * B @ A``
for chosen weight matrices of a frozen model; rsLoRA (Kalajdzievski 2023, arXiv 2312.03732) scales it by
``lora_alpha / sqrt(r)`` instead. The fields below keep PEFT's names (``peft.LoraConfig``) so that what a
learner writes here carries over to PEFT unchanged. Explained in notebooks/02_lora_layer.ipynb.

The checks on ``r``, ``lora_alpha``, ``lora_dropout`` and ``init_lora_weights`` live in
``check_lora_hyperparameters`` so that ``LoraConfig`` and ``LoraLinear`` refuse the same bad values with the
same messages.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

# The ``target_modules`` used when the config gives none, keyed by ``model.config.model_type``: a copy of the
# entries of PEFT's ``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`` for the architectures a learner is
# likely to meet. The names differ by architecture (GPT-2 fuses q, k, v into one ``c_attn``).
DEFAULT_TARGET_MODULES = {
    "llama": ["q_proj", "v_proj"],  # SmolLM2 is a Llama
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    "opt": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "t5": ["q", "v"],
}

INIT_CHOICES = (True, False, "gaussian")
BIAS_CHOICES = ("none", "all", "lora_only")


FP16_MAX = 65504.0  # the largest float16: a larger scaling overflows the LoRA path under fp16 autocast (T4)


def check_flag(name: str, value) -> bool:
    """``value`` if it is a real bool; a string such as "no" or "false" would be truthy, so it is refused."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}); a string "
                        f"such as 'no' or 'false' counts as True in Python. Pass {name}=False or True.")
    return value


def check_lora_hyperparameters(r, lora_alpha, lora_dropout, init_lora_weights,
                               use_rslora: bool = False) -> tuple[int, int | float, float]:
    """Check the LoRA hyperparameters and return ``(r, lora_alpha, lora_dropout)`` as plain Python numbers.

    A bad value raises a ValueError/TypeError that names the problem and the fix. NumPy numbers
    (``np.int64(4)``) are accepted and converted, so that ``json.dumps`` of an adapter config works.
    """
    if isinstance(r, bool) or not isinstance(r, numbers.Integral):
        raise TypeError(f"r must be a positive integer (the LoRA rank, usually 4 to 64); got {r!r}.")
    r = int(r)
    if r < 1:
        raise ValueError(f"r must be >= 1 (the LoRA rank: A is (r, in), B is (out, r)); got r={r}. "
                         "Usual values are 4, 8, 16, 32 or 64.")
    if isinstance(lora_alpha, bool) or not isinstance(lora_alpha, numbers.Real):
        raise TypeError(f"lora_alpha must be a positive number; got {lora_alpha!r}.")
    lora_alpha = int(lora_alpha) if isinstance(lora_alpha, numbers.Integral) else float(lora_alpha)
    if not math.isfinite(lora_alpha):
        raise ValueError(f"lora_alpha must be a finite number > 0; got {lora_alpha}. An infinite scaling "
                         "makes every output NaN. A common choice is lora_alpha = r or 2 * r.")
    if not lora_alpha > 0:
        raise ValueError(f"lora_alpha must be > 0 (the update is scaled by lora_alpha / r); "
                         f"got {lora_alpha}. "
                         "A common choice is lora_alpha = r or 2 * r.")
    scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r
    if scaling > FP16_MAX:
        raise ValueError(f"lora_alpha={lora_alpha:g} with r={r} gives scaling {scaling:g}, above 65504 (the "
                         "largest float16): the LoRA path overflows to Inf in 16-bit precision. Usual values "
                         "are lora_alpha = r or 2 * r (scaling 1 or 2).")
    if isinstance(lora_dropout, bool) or not isinstance(lora_dropout, numbers.Real):
        raise TypeError(f"lora_dropout must be a number in [0, 1); got {lora_dropout!r}.")
    lora_dropout = float(lora_dropout)
    if not 0.0 <= lora_dropout < 1.0:
        raise ValueError(f"lora_dropout must be in [0, 1) (the probability of zeroing an input of the LoRA "
                         f"path); got {lora_dropout}. Usual values are 0.0, 0.05 or 0.1.")
    if not (isinstance(init_lora_weights, bool) or init_lora_weights == "gaussian"):
        raise ValueError(f"init_lora_weights must be one of {INIT_CHOICES}; got {init_lora_weights!r}. "
                         "Use True (PEFT's default) unless you are comparing initialisations.")
    return r, lora_alpha, lora_dropout


@dataclass
class LoraConfig:
    """Which layers get a LoRA update and how it is shaped, scaled and initialised (PEFT's names).

    >>> LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"])  # doctest: +ELLIPSIS
    LoraConfig(r=16, lora_alpha=32, ...)
    """

    # The rank of the update: A is (r, in_features), B is (out_features, r), so each adapted layer trains
    # r * (in_features + out_features) numbers. Usual values: 4 to 64 (8 is PEFT's default).
    r: int = 8
    # The update is multiplied by scaling = lora_alpha / r (or lora_alpha / sqrt(r) with use_rslora). With
    # Adam, alpha acts like a learning-rate scale for the adapter. Usual values: r or 2 * r (e.g. 16, 32).
    lora_alpha: float = 8
    # Dropout on the input of the LoRA path only (the frozen path never sees it). Usual values: 0.0 to 0.1.
    lora_dropout: float = 0.0
    # Which modules to adapt, matched against names from model.named_modules():
    #   a list: a name matches if it equals an entry or ends with "." + entry (["q_proj", "v_proj"]);
    #   a string: a regular expression that must match the whole name (r".*\.(q|v)_proj");
    #   "all-linear": every nn.Linear except the output head (lm_head), as QLoRA does;
    #   None: the architecture's default from DEFAULT_TARGET_MODULES (q_proj and v_proj for Llama).
    target_modules: list[str] | str | None = None
    # rsLoRA: scale by lora_alpha / sqrt(r) instead of lora_alpha / r, so that raising r does not shrink
    # the update. Usual value: False; True when you try large ranks (64 and up).
    use_rslora: bool = False
    # DoRA (weight-decomposed LoRA, arXiv 2402.09353): also train a magnitude per output feature,
    # W' = m * (W0 + delta_W) / ||W0 + delta_W|| (notebook 09). Usual value: False; True costs one extra
    # vector per layer and a slower step (the weight norm is recomputed each forward), unless merged.
    use_dora: bool = False
    # How A and B start. B is zero in both main options, so the adapted model starts equal to the base one.
    #   True: A kaiming-uniform (a = sqrt(5)), as microsoft/LoRA's code and PEFT do (the default);
    #   "gaussian": A ~ N(0, (1/r)^2), closer to the paper's "random Gaussian initialization";
    #   False: A and B both keep nn.Linear's random init, so the model does NOT start unchanged (debugging).
    init_lora_weights: bool | str = True
    # Which biases train along with the adapters: "none" (the default and usual choice), "all" (every bias
    # in the model) or "lora_only" (the biases of the adapted layers).
    bias: str = "none"

    def __post_init__(self):
        check_flag("use_rslora", self.use_rslora)
        check_flag("use_dora", self.use_dora)
        self.r, self.lora_alpha, self.lora_dropout = check_lora_hyperparameters(
            self.r, self.lora_alpha, self.lora_dropout, self.init_lora_weights, self.use_rslora)
        if self.bias not in BIAS_CHOICES:
            raise ValueError(f"bias must be one of {BIAS_CHOICES}; got {self.bias!r}. Usually 'none'.")
        targets = self.target_modules
        if isinstance(targets, (set, tuple)):  # PEFT accepts any collection of names; keep a sorted list
            targets = self.target_modules = sorted(targets)
        if isinstance(targets, list):
            if not targets or not all(isinstance(t, str) and t for t in targets):
                raise ValueError(f"target_modules must be a non-empty list of module names such as "
                                 f"['q_proj', 'v_proj']; got {targets!r}.")
        elif targets is not None and not (isinstance(targets, str) and targets):
            raise TypeError(f"target_modules must be a list of names, a regex string, 'all-linear' or None; "
                            f"got {targets!r}.")
        if isinstance(targets, str) and targets.lower() != "all-linear":
            check_regex(targets)


def check_regex(pattern: str) -> re.Pattern:
    """``re.compile(pattern)``, with an error that says it was read as a regex and how to pass names."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"target_modules={pattern!r} is a string, so it is read as a regular expression, but "
                         f"it is not a valid regular expression ({e}). Pass a list of names instead, e.g. "
                         "['q_proj', 'v_proj'], or fix the pattern (escape ( ) [ ] . with a backslash).") from None
