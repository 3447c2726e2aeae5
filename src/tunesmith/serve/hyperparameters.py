"""A fine-tuning job's hyperparameters as OpenAI's API takes them, each a number or "auto", and "auto" resolved.

Run as: library code; POST /v1/fine_tuning/jobs records what the client asked, the job worker resolves each
"auto" from the training file's size when the job starts, and the job object shows the numbers from then on.

OpenAI documents no formula for "auto". Ours:
- n_epochs: OpenAI's cookbook rule (chat fine-tuning data preparation): 3, but enough epochs that a small set
  is trained on about 100 examples in all (at most 25 epochs), and few enough that a large one stays near
  25,000 (at least 1).
- batch_size: about 16 optimizer steps an epoch at least: the largest power of two <= examples / 16,
  between 1 and 16 (the example brand-voice run, 354 pairs, uses 16).
- learning_rate_multiplier: 1, times the LoRA learning rate the worker starts from.
- beta (DPO): 0.1, OpenAI's and the DPO paper's usual value and tunesmith's dpo.beta default; 2.0 where the job asks
  for SimPO's loss (the SimPO paper's β is 2 to 2.5).
- loss and simpo_gamma (DPO, tunesmith's extension): the preference loss ("auto": sigmoid, OpenAI's; ipo; simpo,
  reference-free) and SimPO's target margin γ ("auto": 0.5, config.py's `dpo.simpo_gamma` and TRL's default); a job
  shows them only where it asked for them.
- reinforcement: compute_multiplier 1 (8 answers sampled per prompt: reinforcement.group_size is 8 × it, at least
  2), eval_interval the steps of one epoch at the auto batch size, eval_samples 64 validation prompts (each
  answered once, greedily, and graded), reasoning_effort "default" (the models served here do not reason: any
  other value is refused when the job is created).
"""
from __future__ import annotations

import math

from tunesmith.config import DpoConfig, ReinforcementConfig

AUTO = "auto"
METHOD_HYPERPARAMETERS = {
    "supervised": ("n_epochs", "batch_size", "learning_rate_multiplier"),
    "dpo": ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"),
    "reinforcement": ("n_epochs", "batch_size", "learning_rate_multiplier", "compute_multiplier", "eval_interval",
                      "eval_samples", "reasoning_effort"),
}
EXTENSIONS = {"dpo": ("loss", "simpo_gamma")}  # tunesmith's own, kept where given: the job shows what it asked
SUPERVISED_KEYS = METHOD_HYPERPARAMETERS["supervised"]  # what the job object's deprecated top-level field shows
TARGET_EPOCHS, MIN_EXAMPLES, MAX_EXAMPLES, MAX_EPOCHS = 3, 100, 25_000, 25
STEPS_PER_EPOCH, MAX_BATCH = 16, 16
DEFAULT_BETA = 0.1
SIMPO_BETA = 2.0
GROUP_SIZE = ReinforcementConfig().group_size  # answers sampled per prompt at compute_multiplier 1 (TRL's default 8)
EVAL_SAMPLES = ReinforcementConfig().valid_samples


def requested_hyperparameters(method: str, given: dict | None) -> dict:
    """Every hyperparameter of `method`, as given or "auto" (an absent or null value is "auto", as at OpenAI)."""
    given = given or {}
    asked = {name: AUTO if given.get(name) is None else given[name] for name in METHOD_HYPERPARAMETERS[method]}
    return asked | {name: given[name] for name in EXTENSIONS.get(method, ()) if given.get(name) is not None}


def auto_n_epochs(examples: int) -> int:
    if examples * TARGET_EPOCHS < MIN_EXAMPLES:
        return min(MAX_EPOCHS, MIN_EXAMPLES // max(examples, 1))
    if examples * TARGET_EPOCHS > MAX_EXAMPLES:
        return max(1, MAX_EXAMPLES // examples)
    return TARGET_EPOCHS


def auto_batch_size(examples: int) -> int:
    if examples < 2 * STEPS_PER_EPOCH:
        return 1
    return min(MAX_BATCH, 2 ** int(math.log2(examples / STEPS_PER_EPOCH)))


AUTO_RULES = {
    "n_epochs": auto_n_epochs,
    "batch_size": auto_batch_size,
    "learning_rate_multiplier": lambda examples: 1.0,
    "beta": lambda examples: DEFAULT_BETA,
    "loss": lambda examples: "sigmoid",
    "simpo_gamma": lambda examples: DpoConfig().simpo_gamma,
    "compute_multiplier": lambda examples: 1.0,
    "eval_interval": lambda examples: max(1, examples // auto_batch_size(examples)),
    "eval_samples": lambda examples: EVAL_SAMPLES,
    "reasoning_effort": lambda examples: "default",
}


def group_size(compute_multiplier: float) -> int:
    """Answers sampled per prompt for OpenAI's compute_multiplier (the exploring a step does scales with it)."""
    return max(2, round(GROUP_SIZE * compute_multiplier))


def resolve_hyperparameters(hyperparameters: dict, examples: int) -> dict:
    """Each "auto" replaced by its rule's value for a training file of `examples` rows (pairs for DPO)."""
    resolved = {name: AUTO_RULES[name](examples) if value == AUTO else value for name, value in hyperparameters.items()}
    if hyperparameters.get("loss") == "simpo" and hyperparameters.get("beta") == AUTO:
        resolved["beta"] = SIMPO_BETA
    return resolved
