"""The engine's slot cache on the tiny model: rows join and leave a running batch at any step, move between
slots, grow the cache, and still answer exactly as when generated alone."""
import numpy as np
import pytest
import torch

from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.decoding.engine import RunningBatch
from tunesmith.models.decoding.prefix_store import MIN_REUSE, shared_length
from tunesmith.models.decoding.requests import GenerationRequest, SamplingParams, Usage
from tunesmith.models.decoding.slot_cache import SlotCache
from tests.tiny import redrawn, tiny_model

QUESTIONS = ["What is the symbol for gold?", "Hydrogen?", "The quick brown fox jumps over the lazy dog. Why?",
             "Name the helium atomic number, please, and the one for hydrogen too.", "Fox?"]


@pytest.fixture
def model(tokenizer):
    """Matrices redrawn at std 0.2, so that each prompt gets its own greedy answer (see test_batcher.py)."""
    return redrawn(tiny_model(tokenizer))


@pytest.fixture
def prompts(tokenizer):
    return render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])


def request(prompt, max_new_tokens, **params):
    return GenerationRequest(prompt, SamplingParams(max_new_tokens=max_new_tokens, **{"temperature": 0, **params}),
                             None, Usage())


def greedy_alone(model, tokenizer, prompt, max_new_tokens) -> list[int]:
    """transformers' generate on the prompt alone, through the first stop token."""
    stops = stop_token_ids(tokenizer)
    output = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stops,
                            pad_token_id=tokenizer.pad_token_id)
    ids = output[0, len(prompt):].tolist()
    return [t for t in ids if t not in stops]


def generated(req) -> list[str]:
    """The request's text per choice (drains its queue)."""
    texts = [""] * req.params.n
    while not req.out.empty():
        item = req.out.get()
        if item is not None:
            texts[item.index] += item.text
    return texts


@torch.inference_mode()
def test_rows_joining_and_leaving_a_running_batch_answer_as_alone(model, tokenizer, prompts):
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    lengths = [30, 4, 45, 12, 50]
    requests = [request(p, m, n=2 if i == 3 else 1) for i, (p, m) in enumerate(zip(prompts, lengths))]
    schedule = {0: [requests[0], requests[1]], 3: [requests[2]], 6: [requests[3]], 20: [requests[4]]}  # step → joiners
    capacities = set()
    for step in range(80):
        if step in schedule:
            batch.admit(model, schedule[step])
        if batch:
            capacities.add(batch.cache.capacity)
            batch.step(model)
    assert not batch and all(r.rows_left == 0 for r in requests)
    assert len({slots for slots, _ in capacities}) > 1 and len({columns for _, columns in capacities}) > 1  # it grew
    for req, prompt, m in zip(requests, prompts, lengths):
        expected = tokenizer.decode(greedy_alone(model, tokenizer, prompt, m), skip_special_tokens=True)
        assert generated(req) == [expected] * req.params.n


@torch.inference_mode()
def test_a_sampled_requests_choices_keep_their_draws_when_other_rows_move_into_their_slots(model, tokenizer, prompts):
    def sampled():
        return request(prompts[2], 12, n=3, temperature=1.0, seed=5)

    alone = RunningBatch(tokenizer, set())
    solo = sampled()
    alone.admit(model, [solo])
    while alone:
        alone.step(model)
    batch = RunningBatch(tokenizer, set())
    short, shared = request(prompts[0], 2), sampled()
    batch.admit(model, [short, shared])  # slots: short 0, choices 1-3
    batch.step(model)  # short leaves: choice 2 moves into slot 0
    assert [row.index for row in batch.rows] == [2, 0, 1]
    while batch:
        batch.step(model)
    answers = generated(solo)
    assert generated(shared) == answers and len(set(answers)) == 3


def test_slot_cache_writes_each_row_at_its_own_column_and_copies_slots(model):
    cache = SlotCache.for_model(model)
    layers, kv_heads, head_dim = cache.shape
    keys = torch.arange(2 * kv_heads * 3 * head_dim, dtype=torch.float32).view(2, kv_heads, 3, head_dim)
    cache.start_prefill([1, 0], 3)
    assert cache.update(keys, -keys, 0)[0] is keys  # a prefill attends over its own keys
    mask = cache.start_decode([3, 1])  # row 0 has 3 tokens, row 1 one (and garbage padding after it)
    inf = float("inf")
    assert mask.dtype == cache.dtype and mask.tolist() == [[[[0, 0, 0, 0]]], [[[0, 0, -inf, -inf]]]]  # additive
    step = torch.full((2, kv_heads, 1, head_dim), 7.0)
    read, _ = cache.update(step, step, 0)
    assert read.shape == (2, kv_heads, 4, head_dim)
    assert torch.equal(read[0, :, :3], keys[1]) and torch.equal(read[1, :, :1], keys[0, :, :1])
    assert (read[0, :, 3] == 7).all() and (read[1, :, 1] == 7).all()
    cache.reserve(5, 200)  # grows, keeps what it holds
    assert cache.capacity == (5, 256) and torch.equal(cache.keys[0, :2, :, :4], read)
    cache.copy_slots([0], [4], 4)
    assert torch.equal(cache.keys[0, 4, :, :4], read[0]) and torch.equal(cache.values[0, 4, :, :3], -keys[1])


@torch.inference_mode()
def test_each_prefill_group_streams_its_first_tokens_before_the_next_group_is_prefilled(model, tokenizer, prompts, monkeypatch):
    monkeypatch.setattr(RunningBatch, "prefill_tokens", 1)  # every prompt a group of its own
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    requests = [request(p, 6, n=2 if i == 1 else 1) for i, p in enumerate(prompts)]
    streamed_before = []  # at each prefill pass: the requests that already had their first delta
    real_prefill = RunningBatch.prefill
    monkeypatch.setattr(RunningBatch, "prefill", lambda self, *args: (
        streamed_before.append({i for i, r in enumerate(requests) if not r.out.empty()}), real_prefill(self, *args))[1])
    batch.admit(model, requests)
    # the first prompt goes first (the others begin like it: the default system prompt), then the shortest first
    assert all(shared_length(np.asarray(prompts[0]), np.asarray(p)) >= MIN_REUSE for p in prompts[1:])
    order = [0, *sorted(range(1, len(prompts)), key=lambda i: len(prompts[i]))]
    assert streamed_before == [set(order[:k]) for k in range(len(prompts))]
    while batch:
        batch.step(model)
    for req, prompt in zip(requests, prompts):
        expected = tokenizer.decode(greedy_alone(model, tokenizer, prompt, 6), skip_special_tokens=True)
        assert generated(req) == [expected] * req.params.n
