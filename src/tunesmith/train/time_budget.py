"""train.time_budget: fit a run's steps into a number of minutes, decided once from the measured pace.

The loop's first step is slow (allocations, cold caches), so it is not measured: the pace is the mean wall time
of the MEASURED_STEPS steps after it, from the end of one optimizer step to the end of the next (data, forward,
backward, step, and any log, evaluation or checkpoint between them). The run's total is then what epochs /
max_steps give, cut to the steps done plus as many more as the budget's remaining seconds hold at that pace
(`steps_within_budget`). It is decided once and never revised: the learning-rate schedule ends at it
(schedule.fix_total_steps), and the checkpoint's TrainState carries it, so a resumed run continues with the
same total and the same lr at every step instead of measuring again.

The budget counts from the loop's start (loading the model and data before it, and the export after it, are
outside). Evaluations and checkpoints after the decision are not in the measured pace unless one fell inside
the measured steps, so a run that evaluates often may overrun the budget by their time. A run resumed before
its decision measures anew and its budget starts over from the resumed step.

Several processes decide alike: each rank measures its own pace, and the slowest rank's pace and elapsed time
(World.max, a collective every rank joins at the same step) go into the same pure function on every rank.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from tunesmith.train.distributed import World

MEASURED_STEPS = 3  # timed steps after the first; few enough that a short run still decides early


def seconds_now() -> float:
    """The budget's clock (tests replace it with a fake one)."""
    return time.perf_counter()


def steps_within_budget(budget_s: float, elapsed_s: float, seconds_per_step: float, done: int, cap: int) -> int:
    """The run's total steps: the `done` ones plus as many as fit the budget's remaining seconds at
    `seconds_per_step`, at most `cap` (what epochs / max_steps give). A budget already spent ends the run now."""
    remaining = budget_s - elapsed_s
    more = math.floor(remaining / seconds_per_step) if seconds_per_step > 0 else cap
    return max(done, min(cap, done + max(0, more)))


class TimeBudget:
    """Measures the pace of one process's steps and decides the run's total once (see the module docstring).

    Call `observe(step)` right after each optimizer step; it returns the decision on the step that makes it.
    """

    def __init__(self, minutes: float, world: World = World(), clock: Callable[[], float] | None = None):
        self.minutes, self.world = minutes, world
        self.clock = clock or seconds_now
        self.started = self.clock()
        self.step_ends: list[float] = []  # clock at the end of each step this process ran

    def observe(self, step: int, cap: int) -> dict | None:
        """After step `step` (1-based, of a run whose epochs / max_steps give `cap`): the decision, once
        MEASURED_STEPS steps after this process's first have been timed, else None."""
        self.step_ends.append(self.clock())
        if len(self.step_ends) < MEASURED_STEPS + 1:
            return None
        first, now = self.step_ends[0], self.step_ends[-1]
        pace = self.world.max((now - first) / MEASURED_STEPS)  # the slowest rank sets everyone's pace
        elapsed = self.world.max(now - self.started)
        total = steps_within_budget(self.minutes * 60, elapsed, pace, step, cap)
        return {"minutes": self.minutes, "seconds_per_step": round(pace, 6),
                "measured_steps": [step - MEASURED_STEPS + 1, step], "decided_at_step": step,
                "elapsed_s": round(elapsed, 3), "steps_by_epochs": cap, "total_steps": total,
                "limited_by": "time_budget" if total < cap else "epochs/max_steps"}


def budget_message(decision: dict) -> str:
    """The line printed when the run decides: what it measured and what it chose."""
    limit = (f"the budget fits {decision['total_steps']} of the {decision['steps_by_epochs']} steps epochs/max_steps give"
             if decision["limited_by"] == "time_budget" else
             f"all {decision['total_steps']} steps fit")
    return (f"time budget {decision['minutes']:g} min: {decision['seconds_per_step']:.3f} s/step over steps "
            f"{decision['measured_steps'][0]}-{decision['measured_steps'][1]}, {decision['elapsed_s']:.1f} s elapsed; "
            f"{limit} — the schedule ends at step {decision['total_steps']}")
