import pytest
import torch
from torch.profiler import profile

from tunesmith.config import ConfigError, load_config

from tunesmith.data.render import IGNORE_INDEX, TokenizedExample, render_chat
from tunesmith.train.forward import MATH_ATTENTION_MAX_WIDTH, batch_loss_and_hits, batch_loss_sum, final_hidden
from tunesmith.train.packing import SHARED_ROW_TOKENS, collate, collate_placed, common_prefix, pack_rows


def examples(tokenizer):
    chats = [
        [{"role": "user", "content": "What is the symbol for gold?"}, {"role": "assistant", "content": "Au."}],
        [{"role": "user", "content": "Hydrogen?"}, {"role": "assistant", "content": "Atomic number 1."}],
        [{"role": "user", "content": "The quick brown fox"}, {"role": "assistant", "content": "jumps over the lazy dog."}],
    ]
    long = [{"role": "user", "content": "Tell me about the elements."},
            {"role": "assistant", "content": " ".join(["Hydrogen, helium, lithium, beryllium, boron, carbon."] * 8)}]
    return [render_chat(tokenizer, chat, max_length=512) for chat in [*chats, long]]  # the short three fit in its width


def test_pack_rows_fills_rows_without_exceeding_max_length():
    rows = pack_rows([5, 3, 4, 2, 6], max_length=8)
    assert sorted(i for row in rows for i in row) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 4, 2, 6][i] for i in row) <= 8 for row in rows)
    assert len(rows) == 3


def test_packed_logits_equal_unpacked(tokenizer, model):
    batch = examples(tokenizer)
    packed, placed = collate_placed(batch, tokenizer.pad_token_id, max_length=512, packing=True)
    assert packed.input_ids.shape == (2, len(batch[-1].input_ids))  # rows as wide as the longest: the three short share one
    assert {row for row, _ in placed[:3]} == {1}
    decoder = model.get_decoder()
    with torch.no_grad():
        packed_hidden = decoder(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                                position_ids=packed.position_ids).last_hidden_state
        for example, (row, columns) in zip(batch, placed):
            alone = decoder(input_ids=torch.tensor([example.input_ids])).last_hidden_state[0]
            assert torch.allclose(packed_hidden[row, columns], alone, atol=1e-4)


def attention_ops(model, batch, grad: bool = True) -> set[str]:
    with torch.set_grad_enabled(grad), profile() as trace:
        final_hidden(model, batch)
    return {event.key for event in trace.key_averages() if "scaled_dot_product" in event.key}


def test_training_attends_with_the_math_kernel_on_short_rows_and_packing_still_holds(tokenizer, model):
    *short, long = examples(tokenizer)
    batch = [*short, TokenizedExample(long.input_ids[:110], long.labels[:110])]  # the short three (105 tokens) share a row
    packed, placed = collate_placed(batch, tokenizer.pad_token_id, max_length=512, packing=True)
    assert packed.input_ids.shape == (2, 110) and {row for row, _ in placed[:3]} == {1}
    assert "aten::_scaled_dot_product_attention_math" in attention_ops(model, packed)
    assert "aten::_scaled_dot_product_attention_math" not in attention_ops(model, packed, grad=False)  # flash's forward is faster
    packed_hidden = final_hidden(model, packed).detach()  # with gradients: the math kernel
    with torch.no_grad():
        for example, (row, columns) in zip(batch, placed):
            alone = model.get_decoder()(input_ids=torch.tensor([example.input_ids])).last_hidden_state[0]
            assert torch.allclose(packed_hidden[row, columns], alone, atol=1e-4)
    wide = [TokenizedExample(list(range(1, MATH_ATTENTION_MAX_WIDTH + 2)), [1] * (MATH_ATTENTION_MAX_WIDTH + 1))]
    ops = attention_ops(model, collate(wide, tokenizer.pad_token_id, max_length=512, packing=True))
    assert any("flash_attention" in op for op in ops) and "aten::_scaled_dot_product_attention_math" not in ops


def test_rows_are_as_wide_as_the_longest_example_not_max_length():
    short = [TokenizedExample([1] * n, [1] * n) for n in (5, 4, 3, 2)]
    assert collate(short, pad_id=0, max_length=64, packing=True).input_ids.shape == (3, 5)  # 5 | 4 | 3+2
    assert collate(short, pad_id=0, max_length=4, packing=True).input_ids.shape[1] == 5  # truncation happens earlier


def test_packed_loss_equals_padded_loss(tokenizer, model):
    batch = examples(tokenizer)
    packed = collate(batch, tokenizer.pad_token_id, max_length=512, packing=True)
    padded = collate(batch, tokenizer.pad_token_id, max_length=512, packing=False)
    assert padded.input_ids.shape[0] == len(batch)
    assert packed.num_trained == padded.num_trained == sum(e.num_trained for e in batch)
    with torch.no_grad():
        assert torch.allclose(batch_loss_sum(model, packed), batch_loss_sum(model, padded), atol=1e-4)


def test_targets_never_cross_example_boundaries():
    # raw text trains every token: the first token of the second example must not be a target of the first
    a = TokenizedExample([5, 6, 7], [5, 6, 7])
    b = TokenizedExample([8, 9], [8, 9])
    long = TokenizedExample([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])  # a and b share a row as wide as it
    packed = collate([a, b, long], pad_id=0, max_length=8, packing=True)
    assert packed.targets[1].tolist() == [6, 7, IGNORE_INDEX, 9, IGNORE_INDEX]
    assert packed.position_ids[1].tolist() == [0, 1, 2, 0, 1]


def test_chunked_loss_and_gradients_equal_plain_cross_entropy(tokenizer, model):
    batch = collate(examples(tokenizer), tokenizer.pad_token_id, max_length=512, packing=False)
    plain_model, chunked_model = model, type(model)(model.config)
    chunked_model.load_state_dict(model.state_dict())
    logits = plain_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         position_ids=batch.position_ids).logits
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="sum")
    plain.backward()
    chunked = batch_loss_sum(chunked_model, batch, loss_chunk=2)  # many chunks, recomputed in backward
    chunked.backward()
    assert torch.allclose(plain, chunked, atol=1e-4)
    for (name, p), q in zip(plain_model.named_parameters(), chunked_model.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_token_accuracy_hits_are_the_argmax_matches_whatever_the_chunking(tokenizer, model):
    batch = collate(examples(tokenizer), tokenizer.pad_token_id, max_length=512, packing=False)
    trained = batch.targets != IGNORE_INDEX
    with torch.no_grad():  # make some predictions right, so the count is not trivially zero
        model.lm_head.weight[batch.targets[trained][:3]] += 50 * model.model.norm(model.model(batch.input_ids).last_hidden_state)[trained][:3]
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids).logits
    expected = int((logits.argmax(-1)[trained] == batch.targets[trained]).sum())
    assert expected >= 1
    for chunk in (2, 1024):  # checkpointed chunks and the single block
        loss, hits = batch_loss_and_hits(model, batch, loss_chunk=chunk)
        assert int(hits) == expected
        assert torch.allclose(loss, batch_loss_sum(model, batch, loss_chunk=chunk))


def system_prompted(tokenizer):
    """The short chats with one system prompt (untrained): every example starts with the same tokens."""
    system = {"role": "system", "content": "You answer questions about chemistry for a museum's visitors, briefly."}
    chats = [[system, *chat] for chat in (
        [{"role": "user", "content": "What is the symbol for gold?"}, {"role": "assistant", "content": "Au."}],
        [{"role": "user", "content": "Hydrogen?"}, {"role": "assistant", "content": "Atomic number 1."}],
        [{"role": "user", "content": "Neon?"}, {"role": "assistant", "content": "A noble gas, number 10."}])]
    return [render_chat(tokenizer, chat, max_length=512) for chat in chats]


def test_examples_sharing_a_system_prompt_compute_it_once_and_each_computes_what_it_would_alone(tokenizer, model):
    raw = TokenizedExample([5, 6, 7, 8], [5, 6, 7, 8])  # raw text: no prefix to share, packed whole beside them
    batch = [*system_prompted(tokenizer), raw]
    plain = collate(batch, tokenizer.pad_token_id, max_length=512, packing=True)
    shared, placed = collate_placed(batch, tokenizer.pad_token_id, max_length=512, packing=True, share_prefix=True)
    prefix, sharing = common_prefix(batch, [True] * len(batch))
    assert prefix >= 16 and sharing == [True, True, True, False]
    assert min(columns.start for _, columns in placed) == prefix  # the row starts with the prefix, once
    assert shared.input_ids.shape[0] == 1 and shared.input_ids.numel() == sum(len(e.input_ids) for e in batch) - 2 * prefix
    assert shared.num_real_tokens == plain.num_real_tokens and shared.num_trained == plain.num_trained
    with torch.no_grad():  # every example: its tokens' hidden states as alone, prefix read from the shared copy
        hidden = model.get_decoder()(input_ids=shared.input_ids, attention_mask=shared.attention_mask,
                                     position_ids=shared.position_ids).last_hidden_state[0]
        for example, (_, columns), shares in zip(batch, placed, [True, True, True, False]):
            alone = model.get_decoder()(input_ids=torch.tensor([example.input_ids])).last_hidden_state[0]
            assert torch.allclose(hidden[columns], alone[prefix if shares else 0 :], atol=1e-4)
    losses, grads = [], []
    for packed in (plain, shared):  # the same loss and gradients as without sharing
        model.zero_grad()
        loss = batch_loss_sum(model, packed)
        loss.backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(losses[0], losses[1], atol=1e-4) and torch.allclose(grads[0], grads[1], atol=1e-5)


def test_no_prefix_is_shared_when_examples_begin_differently_or_train_their_first_tokens(tokenizer):
    different = examples(tokenizer)[:3]  # the template's default system prompt... and then different users
    raw = [TokenizedExample(list(range(1, 20)), list(range(1, 20))), TokenizedExample(list(range(1, 25)), list(range(1, 25)))]
    for batch in (raw, [TokenizedExample([1, 2, 3], [-100, -100, 3])] * 2):  # trained from the start / too short
        a = collate(batch, 0, max_length=64, packing=True)
        b = collate(batch, 0, max_length=64, packing=True, share_prefix=True)
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.attention_mask, b.attention_mask)
    assert common_prefix(different, [True] * 3)[0] > 0  # the default system prompt is still shared...
    kept = collate(different, tokenizer.pad_token_id, max_length=512, packing=True, share_prefix=True,
                   shareable=[False] * 3)  # ...unless the caller keeps each example whole
    assert torch.equal(kept.input_ids, collate(different, tokenizer.pad_token_id, max_length=512, packing=True).input_ids)


def test_share_prefix_is_refused_where_it_would_do_nothing(tmp_path):
    for overrides, says in (({"data.packing": False}, "data.packing: true"), ({"train.method": "dpo"}, "supervised runs")):
        with pytest.raises(ConfigError, match=says):
            load_config(overrides={"model.base": "smollm2-135m-instruct", "out": tmp_path, "data.share_prefix": True, **overrides})


def test_share_prefix_defaults_to_on_exactly_where_it_applies(tmp_path):
    def resolved(**overrides):
        config = load_config(overrides={"model.base": "smollm2-135m-instruct", "out": tmp_path, **overrides})
        return config.data.share_prefix

    assert resolved() is True and resolved(**{"train.method": "full"}) is True  # packed supervised runs
    assert resolved(**{"data.packing": False}) is False
    assert resolved(**{"train.method": "dpo"}) is False and resolved(**{"train.method": "classification"}) is False
    assert resolved(**{"data.share_prefix": False}) is False  # said outright, kept


def test_shared_rows_stay_narrow_when_max_length_is_long():
    prompted = [TokenizedExample(list(range(10)) + [99] * 40, [-100] * 11 + [99] * 39) for _ in range(12)]
    shared = collate(prompted, 0, max_length=4096, packing=True, share_prefix=True)
    assert tuple(shared.input_ids.shape) == (2, 10 + 6 * 40) and 10 + 6 * 40 <= SHARED_ROW_TOKENS  # not one row of 490


@pytest.mark.parametrize("grouped", [False, True])
def test_rows_of_padding_change_no_loss_or_gradient(tokenizer, model, grouped):
    from tunesmith.train.grouped_attention import use_grouped_attention

    if grouped:
        assert use_grouped_attention(model)
    batch = system_prompted(tokenizer)
    results = []
    for min_rows in (1, 3):
        packed, placed = collate_placed(batch, tokenizer.pad_token_id, max_length=512, packing=True, share_prefix=True,
                                        min_rows=min_rows)
        assert packed.input_ids.shape[0] == min_rows and {row for row, _ in placed} == {0}
        assert (packed.input_ids[1:] == tokenizer.pad_token_id).all() and (packed.targets[1:] == IGNORE_INDEX).all()
        model.zero_grad()
        loss = batch_loss_sum(model, packed)
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]),
                        packed.num_real_tokens, packed.num_trained))
    (l1, g1, *counts1), (l3, g3, *counts3) = results
    assert counts1 == counts3 and torch.allclose(l1, l3, atol=1e-6) and torch.allclose(g1, g3, atol=1e-6)
