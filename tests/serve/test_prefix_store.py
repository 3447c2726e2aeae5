"""Prompts that begin like one prefilled before prefill only the rest (models/decoding/prefix_store.py), and still answer
exactly as when generated alone; the store keeps adapters apart, forgets the oldest past its size, and forgets
everything when the engine runs another model or the model's adapters change."""
import numpy as np
import pytest
import torch

from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.models.decoding.engine import RunningBatch
from tunesmith.models.decoding.prefix_store import MIN_REUSE, PrefixStore
from tunesmith.models.decoding.slot_cache import SlotCache
from tests.serve.test_slot_cache import generated, greedy_alone, request
from tests.serve.test_stacked_lora import add_random_adapter, alone
from tests.tiny import redrawn, tiny_model

SYSTEM = "You answer questions about the chemical elements in one short sentence, quoting the periodic table."


def kv(tokens: int, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values (layers 2, kv_heads 1, tokens, head_dim 4)."""
    keys = torch.full((2, 1, tokens, 4), fill)
    return keys, -keys


def test_the_longest_match_of_the_same_adapter_is_found_and_short_matches_are_not_reused():
    store = PrefixStore()
    store.bind(object)
    long, other = list(range(40)), list(range(20)) + [99] * 20
    store.add(None, long, *kv(40, 1.0))
    store.add(None, other, *kv(40, 2.0))
    store.add("a", long, *kv(40, 3.0))
    entry, shared = store.longest(None, list(range(30)) + [7, 7])
    assert shared == 30 and torch.equal(entry.keys, torch.full((2, 1, 40, 4), 1.0))
    entry, shared = store.longest("a", list(range(25)))
    assert shared == 25 and entry.keys[0, 0, 0, 0] == 3.0  # the adapter's own entry
    assert store.longest("b", long) == (None, 0)  # no entry of that adapter
    assert store.longest(None, list(range(MIN_REUSE - 1)) + [500] * 9) == (None, 0)  # too short a match to reuse
    assert store.longest(None, list(range(MIN_REUSE))) == (None, 0)  # its last token is prefilled anyway: 7 < 8
    store.add(None, list(range(30)), *kv(30))  # held whole by the first entry: nothing added
    assert len(store.entries) == 3


def test_the_least_recently_used_prompts_leave_past_the_size_and_another_model_or_adapters_empty_the_store():
    one = 2 * 2 * 1 * 20 * 4 * 4  # bytes of 20 tokens' keys and values
    store = PrefixStore(max_bytes=2 * one)
    model = torch.nn.Linear(1, 1)
    store.bind(model)
    prompts = [[k] * 20 for k in range(3)]
    store.add(None, prompts[0], *kv(20))
    store.add(None, prompts[1], *kv(20))
    assert store.longest(None, prompts[0])[1] == 20  # prompts[0] used: prompts[1] is now the oldest
    store.add(None, prompts[2], *kv(20))
    assert store.nbytes == 2 * one
    assert [e.tokens[0] for e in store.entries.values()] == [0, 2]
    store.bind(model)  # the same model: kept
    assert len(store.entries) == 2
    store.bind(model, ("an adapter added",))  # its adapters changed
    assert not store.entries and store.nbytes == 0
    store.add(None, prompts[0], *kv(20))
    store.bind(torch.nn.Linear(1, 1), ("an adapter added",))
    assert not store.entries and store.nbytes == 0


@pytest.fixture
def model(tokenizer):
    return redrawn(tiny_model(tokenizer))


def chats(tokenizer, system: str, questions: list[str]) -> list[list[int]]:
    return render_prompts(tokenizer, [[{"role": "system", "content": system}, {"role": "user", "content": q}]
                                      for q in questions])


def recording_prefills(monkeypatch) -> list[tuple[int, list[int]]]:
    """(tokens per prompt in the pass, tokens each slot already held) of every prefill pass."""
    passes = []
    real = SlotCache.start_prefill
    monkeypatch.setattr(SlotCache, "start_prefill", lambda self, slots, width, starts=None: (
        passes.append((width, list(starts or [0] * len(slots)))), real(self, slots, width, starts))[1])
    return passes


@torch.inference_mode()
def test_prompts_sharing_a_prefilled_beginning_prefill_only_the_rest_and_answer_as_alone(model, tokenizer, monkeypatch):
    first, *later = chats(tokenizer, SYSTEM, ["Symbol of gold?", "Hydrogen, please?", "What is the atomic number of neon?"])
    stranger = chats(tokenizer, "Be brief.", ["Symbol of gold?"])[0]
    passes = recording_prefills(monkeypatch)
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    requests = [request(first, 10)]
    batch.admit(model, requests)  # the first prompt prefills whole and is kept
    batch.step(model)
    requests += [request(later[0], 10, n=2), request(later[1], 14), request(stranger, 12)]
    batch.admit(model, requests[1:])  # joins the running batch: one pass, each after what its slot holds
    while batch:
        batch.step(model)
    common = [next(i for i, (a, b) in enumerate(zip(first, prompt)) if a != b) for prompt in later]  # with the first
    assert min(common) >= MIN_REUSE
    assert passes[0] == (len(first), [0])
    width, starts = passes[1]
    assert sorted(starts) == sorted(common + [0])  # the stranger shares too little with anything stored
    assert width == max(len(later[0]) - common[0], len(later[1]) - common[1], len(stranger))
    answers = {}
    for req, m in zip(requests, [10, 10, 14, 12]):
        answers[id(req)] = tokenizer.decode(greedy_alone(model, tokenizer, req.prompt_ids, m), skip_special_tokens=True)
        assert generated(req) == [answers[id(req)]] * req.params.n
    again = request(later[1], 14)  # after the batch emptied: the whole prompt but its last token is stored
    batch.admit(model, [again])
    while batch:
        batch.step(model)
    assert passes[-1] == (1, [len(later[1]) - 1])
    assert generated(again) == [answers[id(requests[2])]]


def test_an_adapters_rows_reuse_only_what_that_adapter_prefilled(tokenizer, monkeypatch):
    model = add_random_adapter(redrawn(tiny_model(tokenizer)), "a")
    prompts = chats(tokenizer, SYSTEM, ["Symbol of gold?", "Symbol of iron?", "Symbol of tin?"])
    passes = recording_prefills(monkeypatch)
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    requests = [request(prompts[0], 8)]  # the base prefills the system prompt
    with torch.inference_mode():
        batch.admit(model, requests)
        while batch:
            batch.step(model)
        requests += [request(prompts[1], 8), request(prompts[2], 8)]
        requests[2].adapter = "a"
        batch.admit(model, requests[1:])
        while batch:
            batch.step(model)
    starts = sorted(start for _, starts in passes[1:] for start in starts)  # the second admission's passes
    assert starts[0] == 0 and starts[1] >= MIN_REUSE  # the base row reuses the base's prefix, the adapter's does not
    for req in requests:
        assert generated(req) == [alone(model, tokenizer, req.prompt_ids, req.adapter)]


def test_a_cold_burst_prefills_one_prompt_per_shared_beginning_first_and_the_rest_after_it(tokenizer, monkeypatch):
    model = add_random_adapter(redrawn(tiny_model(tokenizer)), "a")
    prompts = chats(tokenizer, SYSTEM, ["Symbol of gold?", "Symbol of iron?", "Symbol of tin?", "Symbol of lead?"])
    stranger = chats(tokenizer, "Be brief.", ["Symbol of neon?"])[0]
    passes = recording_prefills(monkeypatch)
    batch = RunningBatch(tokenizer, set(stop_token_ids(tokenizer)))
    requests = [request(p, 8) for p in [*prompts, stranger]]
    for req, adapter in zip(requests, [None, "a", None, "a", None]):
        req.adapter = adapter
    with torch.inference_mode():
        batch.admit(model, requests)  # nothing stored: all five arrive together
        while batch:
            batch.step(model)
    common = [next(i for i, (a, b) in enumerate(zip(prompts[k], prompts[k + 2])) if a != b) for k in (0, 1)]
    assert min(common) >= MIN_REUSE
    # first the first prompt of the base and the first of adapter a, whole (one pass each: two exceed PREFILL_TOKENS)
    assert sorted(passes[:2]) == sorted([(len(prompts[0]), [0]), (len(prompts[1]), [0])])
    later = sorted(start for _, starts in passes[2:] for start in starts)
    assert later == sorted([0, *common])  # the other two reuse their own adapter's leader; the stranger shares nothing
    for req in requests:
        assert generated(req) == [alone(model, tokenizer, req.prompt_ids, req.adapter)]


def test_the_trie_finds_the_longest_match_and_forgets_evicted_prompts():
    one = 2 * kv(10)[0].numel() * 4  # bytes of a 10-token entry (float32 keys and values)
    store = PrefixStore(max_bytes=3 * one)
    store.bind(object)
    shared = list(range(100, 109))
    prompts = [shared + [1], shared + [2], shared[:5] + [3] * 5]
    for prompt in prompts:
        store.add(None, prompt, *kv(10))
    assert store.longest(None, shared + [2, 9])[1] == 10  # prompts[1], used
    entry, length = store.longest(None, shared + [7])  # 9 shared with both: the earlier stored, used
    assert (entry.tokens.tolist(), length) == (prompts[0], 9)
    store.add(None, list(range(200, 210)), *kv(10))  # the least recently used (prompts[2]) goes
    assert len(store.entries) == 3 and store.nbytes == 3 * one
    assert store.longest(None, prompts[2]) == (None, 0)  # 5 tokens shared with what is left: under MIN_REUSE
    store.add(None, list(range(300, 310)), *kv(10))  # then prompts[1]
    entry, length = store.longest(None, shared + [2])
    assert (entry.tokens.tolist(), length) == (prompts[0], 9)
    store.add(None, list(range(400, 410)), *kv(10))  # then 200-209 (prompts[0] was just used)
    assert store.longest(None, list(range(200, 210))) == (None, 0)
    assert set(store.roots[None].children) == {100, 300, 400}  # the trie holds only what the store holds
    assert list(store.roots[None].children[100].keys) == [(None, np.asarray(prompts[0]).tobytes())]
