"""Ranks train disjoint shares of a step that together cover it, under DDP and under the lockstep strategies
(FSDP, DeepSpeed: shorter shares padded with 0-weighted fillers). The 2-process parity tests compare loss
curves, which a global token normalisation can keep equal even if every rank trained the whole step."""
from types import SimpleNamespace

import pytest

from tunesmith.train.distributed import World
from tunesmith.train.loop import local_batches


@pytest.mark.parametrize("lockstep", [False, True])
@pytest.mark.parametrize("size,steps,micro", [(2, 4, 1), (2, 3, 2), (3, 10, 2), (2, 1, 1)])
def test_ranks_see_disjoint_shares_that_cover_the_step(lockstep, size, steps, micro):
    examples = [f"example {i}" for i in range(steps)]
    shares, batch_counts = [], set()
    for rank in range(size):
        strategy = SimpleNamespace(world=World(rank=rank, size=size, strategy="fsdp" if lockstep else "ddp"),
                                   lockstep=lockstep)
        batches = local_batches(examples, strategy, micro)
        shares.append([e for chunk, weight in batches if weight == 1.0 for e in chunk])
        assert all(weight in (0.0, 1.0) and len(chunk) <= micro for chunk, weight in batches)
        batch_counts.add(len(batches))
    trained = [e for share in shares for e in share]
    assert sorted(trained) == sorted(examples)  # together the whole step, each example exactly once
    assert all(len(share) <= -(-steps // size) for share in shares)  # no rank trains more than its share
    if lockstep:
        assert len(batch_counts) == 1  # every rank runs as many forwards/backwards (collectives in each)
