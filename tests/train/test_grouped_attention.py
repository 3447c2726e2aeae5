import json

import torch

from tests.train.test_packing import attention_ops, examples, system_prompted
from tunesmith.data.render import TokenizedExample
from tunesmith.train.forward import batch_loss_sum, final_hidden
from tunesmith.train.grouped_attention import NAME, use_grouped_attention, uses_grouped_attention
from tunesmith.train.packing import collate, collate_placed


def batches(tokenizer):
    """A batch sharing a system prompt beside a raw-text example that does not share it, and a plain packed one
    of rows with several examples and padding."""
    raw = TokenizedExample([5, 6, 7, 8], [5, 6, 7, 8])
    shared = collate([*system_prompted(tokenizer), raw], tokenizer.pad_token_id, max_length=512, packing=True,
                     share_prefix=True)
    plain = collate(examples(tokenizer), tokenizer.pad_token_id, max_length=512, packing=True)
    return shared, plain


def allowed_by_groups(batch) -> torch.Tensor:
    """The (R, T, T) mask the groups attend by: for each query slot that is a position's own, the keys it sees."""
    groups, (rows, width) = batch.attention_groups, batch.input_ids.shape
    lq = groups.queries.shape[1]
    allowed = torch.zeros(rows * width, rows * width, dtype=torch.bool)
    for g, (queries, keys, blocked) in enumerate(zip(groups.queries, groups.keys, groups.blocked[:, 0])):
        for i, q in enumerate(queries.tolist()):
            if groups.outputs[q] == g * lq + i:  # not a padded slot
                allowed[q, keys[~blocked[i]]] = True
    return torch.stack([allowed[r * width:(r + 1) * width, r * width:(r + 1) * width] for r in range(rows)])


def real_positions(batch) -> torch.Tensor:
    """(R, T) True where a position holds a token of an example or of a shared prefix."""
    groups = batch.attention_groups
    return (groups.outputs < groups.queries.numel()).view(batch.input_ids.shape)


def test_groups_attend_exactly_where_the_packed_mask_allows(tokenizer):
    shared, plain = batches(tokenizer)
    assert not real_positions(plain).all()  # padding is there, and belongs to no group
    for batch in (shared, plain):
        real = real_positions(batch)
        mask = batch.attention_mask[:, 0]
        assert torch.equal(allowed_by_groups(batch)[real], mask[real])
        outputs = batch.attention_groups.outputs[real.flatten()]
        assert len(set(outputs.tolist())) == len(outputs)  # each real position is one group's query, once


def test_training_forward_attends_in_groups_with_the_same_hidden_states_loss_and_gradients_as_sdpa(tokenizer, model):
    for batch in batches(tokenizer):
        results = []
        for grouped in (False, True):
            model.config._attn_implementation = "sdpa"
            if grouped:
                assert use_grouped_attention(model) and uses_grouped_attention(model)
            assert bool(attention_ops(model, batch)) != grouped  # sdpa's ops ran, or none
            model.zero_grad()
            hidden = final_hidden(model, batch)
            loss = batch_loss_sum(model, batch)
            loss.backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            results.append((hidden.detach()[real_positions(batch)], loss.detach(), grads))
        (h0, l0, g0), (h1, l1, g1) = results
        assert torch.allclose(h0, h1, atol=1e-5) and torch.allclose(l0, l1, atol=1e-5)
        assert torch.allclose(g0, g1, atol=1e-5)


def test_packed_examples_compute_what_they_would_alone_under_grouped_attention(tokenizer, model):
    batch = examples(tokenizer)
    packed, placed = collate_placed(batch, tokenizer.pad_token_id, max_length=512, packing=True)
    use_grouped_attention(model)
    hidden = final_hidden(model, packed).detach()
    model.config._attn_implementation = "sdpa"
    with torch.no_grad():
        for example, (row, columns) in zip(batch, placed):
            alone = model.get_decoder()(input_ids=torch.tensor([example.input_ids])).last_hidden_state[0]
            assert torch.allclose(hidden[row, columns], alone, atol=1e-4)


def test_batches_with_a_group_wider_than_the_limit_train_through_sdpa(tokenizer, model, monkeypatch):
    from tunesmith.train import forward

    _, plain = batches(tokenizer)
    use_grouped_attention(model)
    for limit, sdpa_expected in ((plain.attention_groups.widest, False), (plain.attention_groups.widest - 1, True)):
        monkeypatch.setattr(forward, "GROUPED_MAX_KEYS", limit)
        assert bool(attention_ops(model, plain)) == sdpa_expected


def test_forwards_without_gradients_keep_sdpa(tokenizer, model):
    shared, _ = batches(tokenizer)
    use_grouped_attention(model)
    assert attention_ops(model, shared, grad=False)


def test_bf16_autocast_agrees_with_sdpa_within_bf16_rounding(tokenizer, model):
    shared, _ = batches(tokenizer)
    hidden = []
    for grouped in (False, True):
        model.config._attn_implementation = "sdpa"
        if grouped:
            use_grouped_attention(model)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden.append(final_hidden(model, shared).detach().float()[real_positions(shared)])
    assert (hidden[0] - hidden[1]).abs().max() < 0.05 * hidden[0].abs().max()


def test_a_saved_model_does_not_carry_the_training_attention(tmp_path, model):
    assert use_grouped_attention(model)
    model.save_pretrained(tmp_path)
    assert NAME not in (tmp_path / "config.json").read_text()
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama"
    model.config._attn_implementation = "eager"
    assert not use_grouped_attention(model)  # only a model on sdpa switches


def test_a_run_trains_with_grouped_attention_where_asked_and_saves_a_plain_sdpa_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from tests.train.test_sft_run import run_config
    from tunesmith.train.forward import causal_lm_of
    from tunesmith.train.setup import build_model
    from tunesmith.train.sft import train

    assert not uses_grouped_attention(causal_lm_of(build_model(run_config(tiny_model_dir, tmp_path, grouped_attention=False))))
    config = run_config(tiny_model_dir, tmp_path)
    assert uses_grouped_attention(causal_lm_of(build_model(config)))  # the default
    train(config)
    assert NAME not in (tmp_path / "run" / "model" / "config.json").read_text()
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").config._attn_implementation == "sdpa"
