"""DPO/IPO losses equal TRL DPOTrainer's on the same batch: loss, gradients and reward metrics.

TRL is called, not re-implemented: a real `DPOTrainer` (trl 1.16) is built around the tiny policy and
reference models and its `compute_loss` runs on a batch from its own `DataCollatorForPreference`, holding
the same token ids and the same trained tokens (the answer through its end-of-turn token) as ours.
"""
import copy

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from tests.tiny import tiny_model
from tunesmith.data.preference import PreferencePair, render_pair
from tunesmith.data.render import IGNORE_INDEX
from tunesmith.train.packing import collate, collate_placed
from tunesmith.train.preference_loss import (
    ChosenRejected,
    batch_example_logps,
    dpo_sigmoid_loss,
    example_index,
    example_logps,
    implicit_rewards,
    ipo_loss,
    reward_metrics,
)

BETA = 0.1
MAX_LENGTH = 128
PAIRS = [
    PreferencePair(1, [{"role": "user", "content": "What is the symbol for gold?"}], "Au, obviously.", "The symbol for gold is Au."),
    PreferencePair(2, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hydrogen?"}], "Number 1, the lightest.", "Hydrogen has atomic number 1."),
    PreferencePair(3, [{"role": "user", "content": "Quick fox?"}], "It jumps over the lazy dog, as foxes do.", "The quick brown fox jumps."),
]


def rendered_examples(tokenizer):
    rendered = [render_pair(tokenizer, pair, MAX_LENGTH) for pair in PAIRS]
    return [r.chosen for r in rendered] + [r.rejected for r in rendered]  # TRL's order: chosen..., rejected...


def trl_features(examples):
    """TRL's tokenized columns for the same tokens: prompt = before the first trained token, answer = trained span."""
    pairs = len(examples) // 2
    features = []
    for chosen, rejected in zip(examples[:pairs], examples[pairs:]):
        spans = []
        for example in (chosen, rejected):
            trained = [i for i, label in enumerate(example.labels) if label != IGNORE_INDEX]
            assert trained == list(range(trained[0], trained[-1] + 1))  # one contiguous answer
            spans.append((example.input_ids[: trained[0]], example.input_ids[trained[0] : trained[-1] + 1]))
        assert spans[0][0] == spans[1][0]  # both answers follow the same prompt tokens
        features.append({"prompt_ids": spans[0][0], "chosen_ids": spans[0][1], "rejected_ids": spans[1][1]})
    return features


def trl_trainer(policy, reference, tokenizer, loss_type, tmp_path):
    args = DPOConfig(
        output_dir=str(tmp_path), beta=BETA, loss_type=[loss_type], max_length=MAX_LENGTH,
        report_to=[], use_cpu=True, bf16=False, save_strategy="no", logging_strategy="no",
    )
    data = Dataset.from_list([{"prompt": p.prompt, "chosen": [{"role": "assistant", "content": p.chosen}],
                               "rejected": [{"role": "assistant", "content": p.rejected}]} for p in PAIRS])
    return DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer)


def indexed(examples, tokenizer, packing):
    batch, placed = collate_placed(examples, tokenizer.pad_token_id, MAX_LENGTH, packing)
    return batch, example_index(placed, batch.input_ids.shape)


def our_logps(model, examples, tokenizer, packing):
    batch, index = indexed(examples, tokenizer, packing)
    return ChosenRejected.split(batch_example_logps(model, batch, index, len(examples)))


def trained_tokens(examples):
    counts = torch.tensor([float(sum(label != IGNORE_INDEX for label in e.labels)) for e in examples])
    return ChosenRejected.split(counts)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_loss_gradients_and_metrics_equal_trl_dpo_trainer(tokenizer, tmp_path, loss_type):
    policy, reference = tiny_model(tokenizer, seed=0), tiny_model(tokenizer, seed=1)  # different weights: rewards != 0
    ours, our_reference = copy.deepcopy(policy), copy.deepcopy(reference)
    trainer = trl_trainer(policy, reference, tokenizer, loss_type, tmp_path)
    examples = rendered_examples(tokenizer)
    trl_loss = trainer.compute_loss(trainer.model, trainer.data_collator(trl_features(examples)))
    trl_loss.backward()

    logps = our_logps(ours, examples, tokenizer, packing=False)
    with torch.no_grad():
        reference_logps = our_logps(our_reference, examples, tokenizer, packing=False)
    if loss_type == "sigmoid":
        per_pair = dpo_sigmoid_loss(logps, reference_logps, BETA)
    else:
        per_pair = ipo_loss(logps, reference_logps, BETA, trained_tokens(examples))
    loss = per_pair.sum() / len(PAIRS)
    loss.backward()

    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-5)
    assert loss.item() > 0.01  # a real loss, not a degenerate zero
    trl_grads = dict(trainer.model.named_parameters())
    for name, parameter in ours.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().max() > 0, name
        torch.testing.assert_close(parameter.grad, trl_grads[name].grad, atol=1e-5, rtol=0, msg=name)

    metrics = reward_metrics(implicit_rewards(logps, reference_logps, BETA), logps)
    mode = "train" if trainer.model.training else "eval"  # TRL files metrics under the model's mode
    trl_metrics = {name: values[-1] for name, values in trainer._metrics[mode].items()}
    trl_names = {"rewards/accuracy": "rewards/accuracies", "rewards/margin": "rewards/margins"}
    for name, value in metrics.items():
        assert value == pytest.approx(trl_metrics[trl_names.get(name, name)], abs=1e-5), name


LONG_PAIR = PreferencePair(9, [{"role": "user", "content": "Name the noble gases."}],
                           "Helium, neon, argon, krypton, xenon and radon. " * 3, "The noble gases are helium and neon. " * 3)


def test_packed_per_example_logps_equal_unpacked(tokenizer, model):
    rendered = [render_pair(tokenizer, pair, MAX_LENGTH) for pair in [*PAIRS, LONG_PAIR]]  # the short ones share rows
    examples = [r.chosen for r in rendered] + [r.rejected for r in rendered]  # as wide as the long pair's answers
    with torch.no_grad():
        unpacked = our_logps(model, examples, tokenizer, packing=False)
        packed = our_logps(model, examples, tokenizer, packing=True)
    assert collate(examples, tokenizer.pad_token_id, MAX_LENGTH, packing=True).input_ids.shape[0] < len(examples)
    torch.testing.assert_close(packed.chosen, unpacked.chosen, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed.rejected, unpacked.rejected, atol=1e-5, rtol=0)


def test_example_index_matches_collate_layout(tokenizer):
    examples = rendered_examples(tokenizer)
    batch, index = indexed(examples, tokenizer, packing=True)
    assert index.shape == batch.input_ids.shape
    for e, example in enumerate(examples):
        assert batch.input_ids[index == e].tolist() == example.input_ids
    assert int((index >= 0).sum()) == batch.num_real_tokens
    assert (batch.targets[index == -1] == IGNORE_INDEX).all()


def test_logps_from_logits_are_the_log_softmax_of_each_trained_target(tokenizer, model):
    """With an identity head the same function reads logits; each example sums only its own trained targets."""
    examples = rendered_examples(tokenizer)
    batch = collate(examples, tokenizer.pad_token_id, MAX_LENGTH, packing=False)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids).logits  # (B, T, V)
    index = indexed(examples, tokenizer, packing=False)[1]
    got = example_logps(logits, batch.targets, index, len(examples), torch.nn.Identity())
    log_probs = logits.log_softmax(-1)  # (B, T, V)
    trained = batch.targets != IGNORE_INDEX  # (B, T)
    picked = log_probs.gather(-1, batch.targets.clamp(min=0)[..., None])[..., 0]  # (B, T)
    expected = (picked * trained).sum(-1)  # (B,): one example a row when not packing
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_dpo_loss_falls_as_the_chosen_answer_gains_probability():
    reference = ChosenRejected(torch.tensor([-10.0]), torch.tensor([-10.0]))
    even = dpo_sigmoid_loss(ChosenRejected(torch.tensor([-10.0]), torch.tensor([-10.0])), reference, BETA)
    better = dpo_sigmoid_loss(ChosenRejected(torch.tensor([-5.0]), torch.tensor([-10.0])), reference, BETA)
    assert even.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())  # -log sigmoid(0)
    assert better.item() < even.item()
    rewards = implicit_rewards(ChosenRejected(torch.tensor([-5.0, -12.0]), torch.tensor([-10.0, -9.0])),
                               ChosenRejected(torch.tensor([-10.0, -10.0]), torch.tensor([-10.0, -10.0])), BETA)
    metrics = reward_metrics(rewards, ChosenRejected(torch.tensor([-5.0, -12.0]), torch.tensor([-10.0, -9.0])))
    assert metrics["rewards/accuracy"] == 0.5
    assert metrics["rewards/margin"] == pytest.approx((0.5 - 0.0 + -0.2 - 0.1) / 2)


def test_simpo_loss_rewards_and_mean_logps_equal_trl_cpo_trainers(tokenizer, model):
    """SimPO against TRL's own code (CPOTrainer, loss_type simpo): its per-token mean log-probs from each answer's
    logits, its loss and rewards from those, beside ours from one packed forward."""
    from types import SimpleNamespace

    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.cpo import CPOTrainer

    from tunesmith.train.preference_loss import per_token, simpo_loss, simpo_rewards

    examples = rendered_examples(tokenizer)
    with torch.no_grad():
        ours = per_token(our_logps(model, examples, tokenizer, packing=True), trained_tokens(examples))
        theirs = torch.stack([CPOTrainer.get_batch_logps(model(torch.tensor([e.input_ids])).logits,
                                                         torch.tensor([e.labels]), average_log_prob=True)[0]
                              for e in examples])
    torch.testing.assert_close(torch.cat([ours.chosen, ours.rejected]), theirs, atol=1e-5, rtol=0)
    trainer = SimpleNamespace(beta=2.0, simpo_gamma=0.5, label_smoothing=0.0, alpha=0.0, loss_type="simpo",
                              accelerator=SimpleNamespace(device="cpu"))
    trl_losses, trl_chosen, trl_rejected = CPOTrainer.cpo_loss(trainer, *theirs.chunk(2))
    means = per_token(our_logps(model, examples, tokenizer, packing=True), trained_tokens(examples))
    losses = simpo_loss(means, 2.0, 0.5)
    torch.testing.assert_close(losses, trl_losses, atol=1e-5, rtol=0)
    rewards = simpo_rewards(means, 2.0)
    torch.testing.assert_close(torch.cat([rewards.chosen, rewards.rejected]), torch.cat([trl_chosen, trl_rejected]),
                               atol=1e-5, rtol=0)
    assert losses.min() > 0.01  # a real loss
