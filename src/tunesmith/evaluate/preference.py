"""The `preference` task's scores: log-probabilities of both answers of held-out pairs, and their rewards.

An answer's log-probability is the summed log-likelihood of its trained tokens (the answer through its
end-of-turn token), computed by `likelihood.example_loss_sums` in length-sorted batches: the same
trained-token head and the same rendering (`render_pair`) as DPO training, so a reward here is the reward
the training log reports. Rewards and their accuracy and margin come from `train.preference_loss`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from tunesmith.data.preference import PreferencePair, load_preferences, render_pair
from tunesmith.evaluate.likelihood import example_loss_sums, pad_id
from tunesmith.evaluate.suite import SuiteError
from tunesmith.train.preference_loss import ChosenRejected, implicit_rewards, reward_metrics


def load_pairs(path: Path, limit: int | None) -> list[PreferencePair]:
    """Every pair of a preference file (the first `limit`), or a SuiteError naming the first invalid row."""
    loaded = load_preferences(path)
    if loaded.errors:
        raise SuiteError(f"{len(loaded.errors)} invalid preference row(s) in {path}, first: {loaded.errors[0]}")
    return loaded.pairs[:limit] if limit else loaded.pairs


def pair_logps(model, tokenizer: PreTrainedTokenizerBase, pairs: list[PreferencePair], path: Path,
               max_length: int, batch_size: int) -> ChosenRejected:
    """(P,) summed log-probabilities of each pair's chosen and rejected answer, in float64."""
    rendered = [render_pair(tokenizer, pair, max_length) for pair in pairs]
    for pair, sides in zip(pairs, rendered):
        if not (sides.chosen.num_trained and sides.rejected.num_trained):
            raise SuiteError(f"{path}:{pair.line}: the prompt fills max_length ({max_length} tokens), leaving an "
                             f"answer with no token to score — raise the task's max_length")
    examples = [sides.chosen for sides in rendered] + [sides.rejected for sides in rendered]
    sums = example_loss_sums(model, examples, pad_id(tokenizer), batch_size)
    return ChosenRejected.split(torch.tensor([-s.total for s in sums], dtype=torch.float64))  # TRL's [chosen..., rejected...]


def reference_logps(rows: list[dict], pairs: int) -> ChosenRejected:
    """The reference run's log-probabilities, read back from the rows `preference_rows` wrote."""
    if len(rows) != pairs:
        raise SuiteError(f"the reference run scored {len(rows)} pairs, this one {pairs}: run both on the same suite")
    return ChosenRejected(torch.tensor([row["logp_chosen"] for row in rows], dtype=torch.float64),
                          torch.tensor([row["logp_rejected"] for row in rows], dtype=torch.float64))


def preference_scores(policy: ChosenRejected, reference: ChosenRejected, beta: float) -> tuple[dict[str, float], ChosenRejected]:
    """(reward_accuracy and margin, the per-pair rewards)."""
    rewards = implicit_rewards(policy, reference, beta)
    means = reward_metrics(rewards, policy)
    return {"reward_accuracy": means["rewards/accuracy"], "margin": means["rewards/margin"]}, rewards


def preference_rows(pairs: list[PreferencePair], policy: ChosenRejected, rewards: ChosenRejected) -> list[dict]:
    """Per pair: the prompt's last turn, the preferred answer, both rewards; the log-probs for a later comparison."""
    rows = []
    for i, pair in enumerate(pairs):
        chosen, rejected = float(rewards.chosen[i]), float(rewards.rejected[i])
        rows.append({"id": pair.line, "prompt": pair.prompt[-1]["content"], "reference": pair.chosen,
                     "prediction": f"reward chosen {chosen:+.3f}, rejected {rejected:+.3f}",
                     "correct": chosen > rejected, "reward_chosen": chosen, "reward_rejected": rejected,
                     "logp_chosen": float(policy.chosen[i]), "logp_rejected": float(policy.rejected[i])})
    return rows
