"""Generation engine on the tiny model: stop strings, n choices, finish reasons, streaming == joined."""
import pytest

from tunesmith.models.chat import render_prompts
from tunesmith.serve.batcher import BatchSlot, complete, generate_deltas
from tunesmith.serve.model_pool import ServedModel
from tunesmith.models.decoding.requests import SamplingParams, Usage


@pytest.fixture
def prompt(tokenizer):
    return render_prompts(tokenizer, [[{"role": "user", "content": "What is the symbol for gold?"}]])[0]


def slot_for(model, tokenizer) -> BatchSlot:
    return BatchSlot(ServedModel(model, tokenizer).batcher, None)


def run(model, tokenizer, prompt, **params):
    return complete(prompt, SamplingParams(**params), slot_for(model, tokenizer))


def test_max_tokens_ends_with_length_and_usage_counts(model, tokenizer, prompt):
    (choice,), usage = run(model, tokenizer, prompt, max_new_tokens=5, temperature=0)
    assert choice[1] == "length" and usage.completion_tokens == 5 and usage.prompt_tokens == len(prompt)
    assert usage.total_tokens == len(prompt) + 5


def test_seeded_sampling_repeats_and_n_choices_come_from_one_batch(model, tokenizer, prompt):
    first, usage = run(model, tokenizer, prompt, max_new_tokens=8, temperature=1.0, n=3, seed=5)
    again, _ = run(model, tokenizer, prompt, max_new_tokens=8, temperature=1.0, n=3, seed=5)
    assert first == again and len(first) == 3 and len({text for text, _ in first}) > 1
    assert usage.completion_tokens == 24


def test_stop_string_cuts_the_text_before_it(model, tokenizer, prompt):
    (full, _), = run(model, tokenizer, prompt, max_new_tokens=12, temperature=1.0, seed=2)[0]
    stop = full.strip()[3:5]
    assert stop, full
    (text, reason), = run(model, tokenizer, prompt, max_new_tokens=12, temperature=1.0, seed=2, stop=[stop])[0]
    assert reason == "stop" and stop not in text and full.startswith(text)


def test_streamed_deltas_join_to_the_complete_answer(model, tokenizer, prompt):
    params = SamplingParams(max_new_tokens=10, temperature=1.0, n=2, seed=9)
    slot = slot_for(model, tokenizer)
    deltas = list(generate_deltas(prompt, params, Usage(), slot))
    joined = ["".join(d.text for d in deltas if d.index == i) for i in range(2)]
    answers, _ = complete(prompt, params, slot)
    assert joined == [text for text, _ in answers]
    assert sorted(d.index for d in deltas if d.finish_reason) == [0, 1]  # one finish per choice
