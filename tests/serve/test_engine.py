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


def test_logprobs_are_the_models_log_softmax_at_each_generated_token(model, tokenizer, prompt):
    import torch

    params = SamplingParams(max_new_tokens=6, temperature=0, logprobs=3)
    deltas = list(generate_deltas(prompt, params, Usage(), slot_for(model, tokenizer)))
    entries = [entry for delta in deltas for entry in delta.logprobs]
    text = "".join(delta.text for delta in deltas)
    tokens = [entry.token for entry in entries]
    assert tokenizer.decode(tokens) == text  # one entry per token of the answer (an end token has none)
    with torch.no_grad():
        for i, entry in enumerate(entries):
            logits = model(torch.tensor([prompt + tokens[:i]])).logits[0, -1].float()
            expected = torch.log_softmax(logits, dim=-1)
            assert entry.logprob == pytest.approx(expected[entry.token].item(), abs=1e-4)
            assert [t for t, _ in entry.top] == expected.topk(3).indices.tolist()
            assert entry.top[0][0] == entry.token  # greedy: the likeliest
    without = list(generate_deltas(prompt, SamplingParams(max_new_tokens=6, temperature=0), Usage(), slot_for(model, tokenizer)))
    assert all(delta.logprobs is None for delta in without) and "".join(d.text for d in without) == text


def test_logprobs_end_with_the_answer_at_a_stop_string(model, tokenizer, prompt):
    (full, _), = run(model, tokenizer, prompt, max_new_tokens=12, temperature=1.0, seed=2)[0]
    stop = full.strip()[3:5]
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=2, stop=[stop], logprobs=0)
    deltas = list(generate_deltas(prompt, params, Usage(), slot_for(model, tokenizer)))
    text = "".join(delta.text for delta in deltas)
    tokens = [entry.token for delta in deltas for entry in delta.logprobs]
    written = tokenizer.decode(tokens)
    assert written.startswith(text) and stop not in written[: len(text)]
    assert len(tokenizer.decode(tokens[:-1])) < len(text) <= len(written)  # the last token is the one that reaches the stop


def greedy_with_penalties(model, tokenizer, prompt, steps, frequency=0.0, presence=0.0, bias=None) -> list[int]:
    """OpenAI's formula written out over full forwards: each step's logits minus count × frequency and presence for
    the tokens generated so far, plus the bias; the argmax; through an end token."""
    from collections import Counter

    import torch

    from tunesmith.models.chat import stop_token_ids

    tokens, counts, ends = [], Counter(), set(stop_token_ids(tokenizer))
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([prompt + tokens])).logits[0, -1].float()
            for token, count in counts.items():
                logits[token] -= count * frequency + presence
            for token, value in (bias or {}).items():
                logits[token] += value
            tokens.append(int(logits.argmax()))
            counts[tokens[-1]] += 1
            if tokens[-1] in ends:
                break
    return tokens


@pytest.mark.parametrize("asked", [{"frequency_penalty": 1.5}, {"presence_penalty": 2.0},
                                   {"frequency_penalty": 0.7, "presence_penalty": -0.5, "logit_bias": {11: 3.0}}])
def test_penalties_and_logit_bias_follow_openais_formula(model, tokenizer, prompt, asked):
    (plain, _), = run(model, tokenizer, prompt, max_new_tokens=8, temperature=0)[0]
    (text, _), = run(model, tokenizer, prompt, max_new_tokens=8, temperature=0, **asked)[0]
    expected = greedy_with_penalties(model, tokenizer, prompt, 8, asked.get("frequency_penalty", 0.0),
                                     asked.get("presence_penalty", 0.0), asked.get("logit_bias"))
    assert text == tokenizer.decode(expected, skip_special_tokens=True)
    assert text != plain  # the tiny model repeats itself: a penalty that did nothing would leave its answer


def test_logit_bias_bans_and_forces_tokens_and_leaves_logprobs_the_models(model, tokenizer, prompt):
    first = greedy_with_penalties(model, tokenizer, prompt, 1)[0]
    banned = greedy_with_penalties(model, tokenizer, prompt, 1, bias={first: -100})[0]
    params = SamplingParams(max_new_tokens=1, temperature=0, logit_bias={first: -100.0}, logprobs=1)
    (delta, *_), = [list(generate_deltas(prompt, params, Usage(), slot_for(model, tokenizer)))]
    (entry,) = delta.logprobs
    assert entry.token == banned != first and entry.top[0][0] == first  # chosen under the bias, reported without it
    forced = tokenizer.convert_tokens_to_ids("a")
    (text, _), = run(model, tokenizer, prompt, max_new_tokens=4, temperature=1.0, seed=3, logit_bias={forced: 100.0})[0]
    assert text == "aaaa"


def test_a_penalised_request_leaves_the_others_in_its_batch_alone(model, tokenizer, prompt):
    from tunesmith.models.chat import stop_token_ids
    from tunesmith.models.decoding.engine import RunningBatch
    from tunesmith.models.decoding.requests import GenerationRequest

    def answers(*params):
        batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
        requests = [GenerationRequest(prompt, p, None, Usage()) for p in params]
        batch.admit(model, requests)
        while len(batch):
            batch.step(model)
        return ["".join(d.text for d in iter(r.out.get_nowait, None)) for r in requests]

    plain = SamplingParams(max_new_tokens=6, temperature=0)
    penalised = SamplingParams(max_new_tokens=6, temperature=0, frequency_penalty=2.0)
    together = answers(plain, penalised)
    assert together == [answers(plain)[0], answers(penalised)[0]] and together[0] != together[1]
