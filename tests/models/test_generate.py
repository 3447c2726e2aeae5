"""Batched greedy generation: input order kept, batching invisible, stops at end of turn, mode restored."""
import torch

from tunesmith.models.chat import stop_token_ids
from tunesmith.models.generate import generate_answers

PROMPTS = [
    [{"role": "user", "content": "Gold?"}],
    [{"role": "user", "content": "What is the chemical symbol for gold? The quick brown fox jumps."}],
    [{"role": "user", "content": "Hydrogen has atomic number 1"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "helium 2"}],
    [{"role": "user", "content": "The lazy dog. 0123456789 and more words here"}],
]


def test_batched_generation_equals_one_at_a_time_in_input_order(talkative_model, tokenizer):
    model = talkative_model
    batched = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3, progress=False)
    single = [generate_answers(model, tokenizer, [p], max_new_tokens=8, progress=False)[0] for p in PROMPTS]
    assert batched == single
    assert len(set(batched)) > 1  # different prompts gave different outputs, so order is really tested


def test_generation_stops_at_end_of_turn_and_drops_special_tokens(model, tokenizer):
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in stop_token_ids(tokenizer)
    with torch.no_grad():  # make the end-of-turn token the only possible greedy choice
        model.lm_head.weight.zero_()
        model.lm_head.weight[end_of_turn] = 1.0
        model.model.norm.weight.fill_(1.0)
    answers = generate_answers(model, tokenizer, PROMPTS[:2], max_new_tokens=8, progress=False)
    assert answers == ["", ""]


def test_generation_leaves_training_mode_as_it_was(model, tokenizer):
    model.train()
    generate_answers(model, tokenizer, PROMPTS[:1], max_new_tokens=2, progress=False)
    assert model.training
    assert generate_answers(model, tokenizer, [], progress=False) == []
