"""Which recipe trains a run: one entry file per train.method, picked here once for every caller.

The CLI and the server's job worker call `train_run`; a new method is one recipe module and one line here.
"""
from __future__ import annotations

from tunesmith.config import RunConfig
from tunesmith.train import classify, dpo, reinforce, sft
from tunesmith.train.distributed import leave_world
from tunesmith.train.sft import RunResult

RECIPES = {"dpo": dpo.train, "classification": classify.train, "reinforcement": reinforce.train}  # any other method (lora / full): supervised finetuning


def train_run(config: RunConfig, **options) -> RunResult:
    """Run `config` with its method's recipe; `options` are the recipes' shared keywords (resume, console, ...)."""
    recipe = RECIPES.get(config.train.method, sft.train)
    try:
        return recipe(config, **options)
    finally:
        leave_world()  # under torchrun: every rank leaves the group itself, at the end of its recipe
