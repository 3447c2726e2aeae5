"""A fake clock for train.time_budget tests, and one rank of a two-process budget decision (spawned: kept light)."""
import json
from pathlib import Path

import torch.distributed as dist

from tunesmith.train.distributed import World
from tunesmith.train.time_budget import MEASURED_STEPS, TimeBudget


class FakeClock:
    """Loop start at 0, the first step ends at `first` (slow), each later step `pace` seconds after the last."""

    def __init__(self, first: float = 10.0, pace: float = 2.0):
        self.first, self.pace, self.calls = first, pace, 0

    def __call__(self) -> float:
        self.calls += 1
        return 0.0 if self.calls == 1 else self.first + self.pace * (self.calls - 2)


def decide_on_rank(rank: int, init_file: str, out_dir: str) -> None:
    """Rank 0 steps every 2 s, rank 1 every 3 s; each writes the decision it took to OUT_DIR/RANK.json."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    budget = TimeBudget(0.5, World(rank=rank, size=2), clock=FakeClock(first=10, pace=2.0 if rank == 0 else 3.0))
    decisions = [budget.observe(step, cap=30) for step in range(1, MEASURED_STEPS + 2)]
    (Path(out_dir) / f"{rank}.json").write_text(json.dumps(decisions[-1]))
    dist.destroy_process_group()
