"""DeepSpeed (ZeRO) through accelerate: the run's DeepSpeed JSON is passed through DeepSpeedPlugin(hf_ds_config=...).

`DeepSpeedStrategy` is the training strategy (strategy.py) of a run with train.distributed: deepspeed. The
loop stays ours: each rank divides its loss by the step's GLOBAL trained-token count, exactly as under ddp
and fsdp. DeepSpeed averages gradients over the ranks and divides the loss by its accumulation steps, so
the loss handed to the engine is multiplied back by both, and the engine is told which micro-batch closes
the step (its clipping, optimizer and zero-grad run then). Batch sizes, accumulation and clipping
come from the tunesmith config; the JSON supplies the rest (ZeRO stage, offload, bf16, ...).

Checkpoints are DeepSpeed's own (ZeRO-partitioned) states in step-N/deepspeed/, so a DeepSpeed run resumes
with the same strategy and world size; the exported model is gathered whole on rank 0 like the others.
The real engine is not exercised by the test-suite (no deepspeed package, no GPU on the test machine): the
strategy is, on a fake engine that keeps DeepSpeed's documented contract (tests/train/test_distributed.py),
and so are `check_deepspeed` and `deepspeed_config`: a missing package or config fails before any model loads.
"""
from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tunesmith.train.checkpoint import trainable_names, trainable_of
from tunesmith.train.distributed import World
from tunesmith.train.objective import Batch, Objective
from tunesmith.train.strategy import plain_model_on_main

SET_BY_TUNESMITH = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size", "gradient_clipping")
CHECKPOINT_DIR = "deepspeed"


class DeepSpeedSetupError(ValueError):
    """DeepSpeed was asked for but cannot run; the message says what to install or fix."""


def check_deepspeed(config_path: Path | None) -> dict:
    """The parsed DeepSpeed JSON, or a DeepSpeedSetupError saying what is missing. Cheap: no model is loaded."""
    if importlib.util.find_spec("deepspeed") is None:
        raise DeepSpeedSetupError(
            "train.distributed is deepspeed but the deepspeed package is not installed: `pip install deepspeed` "
            "(it needs a CUDA toolkit), or use train.distributed: fsdp, which needs nothing beyond torch"
        )
    if config_path is None or not Path(config_path).is_file():
        raise DeepSpeedSetupError(f"train.deepspeed_config {config_path} not found: give the path of a DeepSpeed JSON config")
    try:
        parsed = json.loads(Path(config_path).read_text())
    except json.JSONDecodeError as exc:
        raise DeepSpeedSetupError(f"train.deepspeed_config {config_path} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise DeepSpeedSetupError(f"train.deepspeed_config {config_path}: the top level must be a JSON object")
    return parsed


def deepspeed_config(user: dict, batch_size: int, micro_batch_size: int, max_grad_norm: float, world_size: int) -> dict:
    """The user's JSON with the batch geometry and clipping of the tunesmith config filled in.

    A value the JSON sets to something else is an error: two sources for one setting would silently disagree.
    """
    per_rank = math.ceil(batch_size / world_size)
    accumulation = math.ceil(per_rank / micro_batch_size)
    for key in ("optimizer", "scheduler"):
        if key in user:
            raise DeepSpeedSetupError(
                f"the DeepSpeed config has an {key!r} section, but tunesmith builds AdamW and the learning-rate "
                f"schedule from train.lr, train.weight_decay, train.scheduler and train.warmup_ratio: remove it"
            )
    ours = {"train_micro_batch_size_per_gpu": micro_batch_size, "gradient_accumulation_steps": accumulation,
            "train_batch_size": micro_batch_size * accumulation * world_size, "gradient_clipping": max_grad_norm}
    for key in SET_BY_TUNESMITH:
        if user.get(key, "auto") not in ("auto", ours[key]):
            raise DeepSpeedSetupError(
                f"the DeepSpeed config sets {key}={user[key]!r} but tunesmith derives {ours[key]!r} from train.batch_size, "
                "train.micro_batch_size and train.max_grad_norm: set it to \"auto\" or remove it"
            )
    zero = {**user.get("zero_optimization", {}), "stage3_gather_16bit_weights_on_model_save": True}  # whole export
    return {**user, **ours, "zero_optimization": zero}


def prepare_deepspeed(model, optimizer, config: dict):
    """(engine, optimizer) from accelerate's deepspeed.initialize.

    The scheduler stays outside: it sets the learning rate of the wrapped torch optimizer's param groups,
    which ZeRO steps; accelerate's scheduler wrapper would step it once per process.
    """
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin

    accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=config))
    return accelerator.prepare(model, optimizer)


@dataclass(frozen=True)
class DeepSpeedStrategy:
    """Drives the engine that `wrap` builds; every method's `engine` is the model the loop trains."""

    world: World
    config: dict  # the user's DeepSpeed JSON (check_deepspeed); `wrap` fills in the run's batch geometry

    @property
    def lockstep(self) -> bool:
        return self.world.size > 1  # ZeRO's collectives run inside forward and backward

    def shard(self, model: torch.nn.Module) -> torch.nn.Module:
        return model  # ZeRO partitions when `wrap` builds the engine

    def wrap(self, model, optimizer, settings):
        return prepare_deepspeed(model, optimizer, deepspeed_config(
            self.config, settings.batch_size, settings.micro_batch_size, settings.max_grad_norm, self.world.size))

    def loss_sum(self, engine, objective: Objective, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return objective.loss_sum(engine.module, batch.to(engine.device))  # the engine moved the model there

    def backward(self, engine, loss: torch.Tensor, closes_step: bool) -> None:
        """Undo DeepSpeed's division by accumulation steps and ranks: `loss` is globally normalised already."""
        engine.set_gradient_accumulation_boundary(is_boundary=closes_step)
        engine.backward(loss * engine.gradient_accumulation_steps() * self.world.size)

    def sum_gradients(self, engine) -> None:
        return  # the engine reduced them in backward

    def clip_and_step(self, engine, optimizer, max_norm: float) -> float:
        """DeepSpeed clips (to gradient_clipping = max_norm), steps and zeroes itself; returns its norm."""
        engine.step()
        norm = engine.get_global_grad_norm()
        return float(norm.item() if hasattr(norm, "item") else norm)

    def gather_state(self, engine, optimizer) -> tuple[dict[str, torch.Tensor], dict | None]:
        return gather_engine_weights(engine), None  # ZeRO-partitioned optimizer state: save_partitions holds it

    def save_partitions(self, engine, staging: Path) -> None:
        torch.distributed.barrier()  # the writer has made `staging`
        engine.save_checkpoint(str(staging / CHECKPOINT_DIR), tag="state")
        torch.distributed.barrier()

    def load_state(self, engine, optimizer, checkpoint: Path) -> None:
        found = checkpoint / CHECKPOINT_DIR
        if not found.is_dir():
            raise DeepSpeedSetupError(f"{checkpoint} was not written by a DeepSpeed run: resume it with the strategy that wrote it")
        engine.load_checkpoint(str(found), tag="state", load_lr_scheduler_states=False)

    def plain_model(self, engine, build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
        return plain_model_on_main(gather_engine_weights(engine), build, self.world)


def gather_engine_weights(engine) -> dict[str, torch.Tensor]:
    """Whole trainable tensors on CPU, on rank 0 (ZeRO-3 partitions gathered: collective); as accelerate's get_state_dict."""
    if engine.zero_optimization_stage() == 3:
        full = engine._zero3_consolidated_16bit_state_dict()  # needs stage3_gather_16bit_weights_on_model_save
    else:
        full = engine.module.state_dict() if torch.distributed.get_rank() == 0 else {}
    full = {name: tensor.detach().cpu() for name, tensor in (full or {}).items()}
    return trainable_of(full, trainable_names(engine.module))
