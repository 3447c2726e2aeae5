"""The learning-rate schedule: the same values as transformers' schedulers, and an end that can be fixed once
mid-run (train.time_budget) and travels with the scheduler's state_dict into a checkpoint."""
import pytest
import torch
from transformers import get_scheduler

from tunesmith.train.schedule import LRSchedule, build_scheduler, fix_total_steps

HF_NAMES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def optimizer(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
@pytest.mark.parametrize("total, warmup_ratio", [(1, 0.0), (7, 0.05), (30, 0.2), (100, 0.1), (11, 1.0)])
def test_schedule_equals_transformers(kind, total, warmup_ratio):
    ours = LRSchedule(kind, warmup_ratio, total)
    theirs = get_scheduler(HF_NAMES[kind], optimizer(), num_warmup_steps=int(warmup_ratio * total),
                           num_training_steps=total).lr_lambdas[0]
    assert [ours(step) for step in range(total + 3)] == [theirs(step) for step in range(total + 3)]


def lrs_of(scheduler, steps):
    values = []
    for _ in range(steps):
        scheduler.optimizer.step()
        scheduler.step()
        values.append(scheduler.get_last_lr()[0])
    return values


def test_a_total_fixed_mid_run_ends_the_schedule_there_and_is_in_the_state_dict():
    scheduler = build_scheduler(optimizer(2.0), "cosine", 0.2, 30)
    lrs_of(scheduler, 4)
    fix_total_steps(scheduler, 11)
    # the optimizer already holds the new schedule's lr for step 5 (not the 30-step schedule's)
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * LRSchedule("cosine", 0.2, 11)(4))
    after = lrs_of(scheduler, 7)
    assert after[-1] == 0.0 and all(lr > 0 for lr in after[:-1])  # reaches 0 at step 11, not before
    resumed = build_scheduler(optimizer(2.0), "cosine", 0.2, 30)  # as a resumed run builds it: from epochs
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.lr_lambdas[0].total_steps == 11 and resumed.lr_lambdas[0].warmup_steps == 2
