"""Continuous batching on the tiny model: a request's answer does not depend on what it shares a batch with.

Requests are put in one batch deterministically by holding the model's lock (the batcher takes it for
every step) while they are submitted: all of them are waiting when the batcher next looks.
"""
import json
import queue
import threading

import pytest
import torch

from tunesmith.models.chat import render_prompts, stop_token_ids
from tunesmith.serve.batcher import BatchShares, BatchSlot, complete, generate_deltas
from tunesmith.serve.model_pool import ServedModel
from tunesmith.models.decoding.requests import GenerationRequest, SamplingParams, Usage
from tests.tiny import lora_model, redrawn, tiny_model

QUESTIONS = ["What is the symbol for gold?", "Hydrogen?", "The quick brown fox jumps over the lazy dog. Why?",
             "Name the helium atomic number, please, and the one for hydrogen too."]


@pytest.fixture
def model(tokenizer):
    """The tiny llama with its matrices redrawn at std 0.2: at the default init every prompt's greedy answer is
    the same run of newlines, which would hide a row reading another row's cache or positions."""
    return redrawn(tiny_model(tokenizer))


@pytest.fixture
def prompts(tokenizer):
    return render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])


@pytest.fixture
def shared(model, tokenizer):
    return ServedModel(model, tokenizer)


def collect(request) -> tuple[list[tuple[str, str]], Usage]:
    """Drain a submitted request: [(text, finish_reason)] per choice."""
    n = request.params.n
    texts, reasons = [""] * n, [None] * n
    while (item := request.out.get(timeout=60)) is not None:
        assert not isinstance(item, BaseException), item
        texts[item.index] += item.text
        reasons[item.index] = item.finish_reason or reasons[item.index]
    return list(zip(texts, reasons)), request.usage


def alone(shared, prompt, params, adapter=None):
    """The request served by itself: a fresh batcher, nothing else in its batch."""
    return complete(prompt, params, BatchSlot(ServedModel(shared.model, shared.tokenizer).batcher, adapter))


def together(shared, jobs):
    """Submit (prompt, params, adapter) jobs so that they are admitted in one batch; their answers."""
    with shared.lock:
        requests = [shared.batcher.submit(prompt, params, adapter, Usage()) for prompt, params, adapter in jobs]
    return [collect(request) for request in requests]


def hf_greedy(model, tokenizer, prompt, max_new_tokens):
    """Reference: transformers' own generate, one prompt, greedy."""
    output = model.generate(input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                            max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_token_ids(tokenizer),
                            pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, len(prompt):], skip_special_tokens=True)


def test_greedy_rows_of_one_batch_match_transformers_generate_alone(shared, model, tokenizer, prompts):
    lengths, ns = [12, 3, 20, 7], [1, 1, 2, 1]  # rows leave the batch at different steps; n=2 shares one prefill
    jobs = [(p, SamplingParams(max_new_tokens=m, temperature=0, n=n), None) for p, m, n in zip(prompts, lengths, ns)]
    answers = together(shared, jobs)
    assert list(shared.batcher.stats.admitted) == [4] and shared.batcher.stats.largest_batch == 5
    for prompt, m, n, (choices, usage) in zip(prompts, lengths, ns, answers):
        assert [text for text, _ in choices] == [hf_greedy(model, tokenizer, prompt, m)] * n
        assert usage.prompt_tokens == len(prompt) and n <= usage.completion_tokens <= m * n
        assert all(reason == "stop" for _, reason in choices) or usage.completion_tokens == m * n


def test_each_row_keeps_its_own_max_tokens_stop_and_seed(shared, prompts):
    sampled = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7, n=2)
    (full, _), = alone(shared, prompts[2], SamplingParams(max_new_tokens=16, temperature=1.0, seed=3))[0]
    stop = full.strip()[4:6]
    assert stop, full
    jobs = [(prompts[0], SamplingParams(max_new_tokens=3, temperature=0), None),
            (prompts[1], sampled, None),
            (prompts[2], SamplingParams(max_new_tokens=16, temperature=1.0, seed=3, stop=[stop]), None),
            (prompts[3], SamplingParams(max_new_tokens=16, temperature=0.7, seed=11), None)]
    batched = together(shared, jobs)
    for (prompt, params, _), answer in zip(jobs, batched):
        assert answer[0] == alone(shared, prompt, params)[0]
    (short, reason), = batched[0][0]
    assert batched[0][1].completion_tokens <= 3 and (reason == "length") == (batched[0][1].completion_tokens == 3)
    assert len({text for text, _ in batched[1][0]}) == 2  # n=2 from one seeded generator: two different draws
    (cut, reason), = batched[2][0]
    assert reason == "stop" and stop not in cut and full.startswith(cut)


def test_tiny_top_p_samples_the_greedy_token(shared, prompts):
    greedy = alone(shared, prompts[0], SamplingParams(max_new_tokens=8, temperature=0))[0]
    nucleus_of_one = alone(shared, prompts[0], SamplingParams(max_new_tokens=8, temperature=1.5, top_p=1e-6, seed=1))[0]
    assert nucleus_of_one == greedy


def test_base_and_two_adapters_in_one_batch_each_get_their_own_answer(model, tokenizer, prompts):
    peft = lora_model(model)
    expected = {}
    with peft.disable_adapter():
        expected[None] = hf_greedy(peft, tokenizer, prompts[0], 10)
    for name in ("a", "b"):
        peft.set_adapter(name)
        expected[name] = hf_greedy(peft, tokenizer, prompts[0], 10)
    assert len(set(expected.values())) == 3  # the adapters really change the answer
    shared = ServedModel(peft, tokenizer)
    order = ["b", None, "a", "b"]
    answers = together(shared, [(prompts[0], SamplingParams(max_new_tokens=10, temperature=0), a) for a in order])
    assert [answer[0][0][0] for answer in answers] == [expected[a] for a in order]
    assert list(shared.batcher.stats.admitted) == [4]


def wait_until(predicate):
    for _ in range(6000):
        if predicate():
            return
        threading.Event().wait(0.01)
    raise TimeoutError


def in_threads(shared, calls):
    """Run each call in its own thread while the model is busy; release it once all of them have submitted."""
    results = [None] * len(calls)

    def run(i):
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with shared.lock:
        for thread in threads:
            thread.start()
        wait_until(lambda: shared.batcher.waiting == len(calls))
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_requests_from_several_threads_run_as_one_batch(shared, prompts):
    params = SamplingParams(max_new_tokens=6, temperature=0)
    slot = BatchSlot(shared.batcher, None)
    calls = [lambda p=p: complete(p, params, slot) for p in prompts]
    results = in_threads(shared, calls)
    assert list(shared.batcher.stats.admitted) == [4] and shared.batcher.stats.largest_batch == 4
    assert shared.batcher.stats.steps <= 6  # 4 requests × ≤6 tokens decoded in ≤6 steps, not 24
    assert [r[0] for r in results] == [alone(shared, p, params)[0] for p in prompts]


def test_streamed_deltas_in_a_busy_batch_join_to_the_answer_alone(shared, prompts):
    params = SamplingParams(max_new_tokens=12, temperature=1.0, seed=4, n=2)
    slot = BatchSlot(shared.batcher, None)
    other = SamplingParams(max_new_tokens=9, temperature=0)
    calls = [lambda: list(generate_deltas(prompts[0], params, Usage(), slot)),
             lambda: complete(prompts[1], other, slot),
             lambda: complete(prompts[2], other, slot)]
    deltas = in_threads(shared, calls)[0]
    assert list(shared.batcher.stats.admitted) == [3]
    joined = ["".join(d.text for d in deltas if d.index == i) for i in range(2)]
    assert joined == [text for text, _ in alone(shared, prompts[0], params)[0]]
    assert sorted(d.index for d in deltas if d.finish_reason) == [0, 1]  # one finish per choice


class HeldAtFirstToken(queue.Queue):
    """A request's output queue whose first put waits until `release` is set: the batcher stops right after
    streaming that token (inside its step, holding the model's lock) until the test has queued another request."""

    def __init__(self):
        super().__init__()
        self.reached, self.release = threading.Event(), threading.Event()

    def put(self, item, block=True, timeout=None):
        if not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(timeout=60)
        super().put(item, block, timeout)


def test_a_request_joins_a_running_batch_between_steps(shared, model, tokenizer, prompts):
    long = SamplingParams(max_new_tokens=40, temperature=0)
    assert alone(shared, prompts[2], long)[0][0][1] == "length"  # it really runs 40 steps
    out = HeldAtFirstToken()
    first = shared.batcher.submit(prompts[2], long, None, Usage(), out)
    assert out.reached.wait(timeout=60)  # it is generating: its first token is out, 39 steps to go
    second = shared.batcher.submit(prompts[0], SamplingParams(max_new_tokens=8, temperature=0), None, Usage())
    out.release.set()  # the next step admits the second request beside the first
    head = first.out.get(timeout=60)
    (rest, _), = collect(first)[0]
    (joined, _), = collect(second)[0]
    assert list(shared.batcher.stats.admitted) == [1, 1] and shared.batcher.stats.largest_batch == 2
    assert head.text + rest == hf_greedy(model, tokenizer, prompts[2], 40)
    assert joined == hf_greedy(model, tokenizer, prompts[0], 8)


def test_a_client_that_leaves_frees_its_rows_and_the_others_finish(shared, model, tokenizer, prompts):
    slot = BatchSlot(shared.batcher, None)
    long = SamplingParams(max_new_tokens=40, temperature=0)
    other = shared.batcher.submit(prompts[0], SamplingParams(max_new_tokens=30, temperature=0), None, Usage())
    stream = generate_deltas(prompts[2], long, Usage(), slot)
    next(stream)
    stream.close()  # the client went away
    (text, _), = collect(other)[0]
    assert text == hf_greedy(model, tokenizer, prompts[0], 30)
    wait_until(lambda: shared.batcher.stats.steps and not shared.batcher.pending.qsize())


def test_requests_beyond_max_rows_wait_for_room_and_then_run(model, tokenizer, prompts):
    shared = ServedModel(model, tokenizer)
    shared.batcher.max_rows = 3
    jobs = [(p, SamplingParams(max_new_tokens=5, temperature=0, n=2), None) for p in prompts[:3]]
    answers = together(shared, jobs)
    assert shared.batcher.stats.admitted[0] == 1 and shared.batcher.stats.largest_batch <= 3
    assert sum(shared.batcher.stats.admitted) == 3
    for (prompt, params, _), answer in zip(jobs, answers):
        assert answer[0] == alone(shared, prompt, params)[0]


def queued(batcher, kinds: str, n: int = 1) -> list:
    """Requests put on the batcher's queue without its thread: "i" interactive, "b" background, in that order."""
    requests = [GenerationRequest([1, 2, 3], SamplingParams(max_new_tokens=4, n=n), None, Usage(), background=kind == "b")
                for kind in kinds]
    for request in requests:
        batcher.pending.put(request)
    batcher.waiting += len(requests)
    return requests


def test_interactive_requests_go_first_and_background_ones_keep_to_their_share_beside_them(shared):
    batcher = shared.batcher
    assert batcher.shares == BatchShares(beside_chats=0.25, reserve=0.125)  # the defaults: the figures below
    batcher.max_rows = 8  # background share beside interactive requests: a quarter of 8 = 2 rows
    requests = queued(batcher, "bbbbiib")
    taken = batcher.take_pending(room=8)
    assert taken == [requests[4], requests[5], requests[0], requests[1]]  # both chats, then 2 of the batch's rows
    assert batcher.held == [requests[2], requests[3], requests[6]]  # the rest wait, in their order
    # the chats still decode: a freed row goes to no background request beyond the share
    assert batcher.take_pending(room=4, background_rows=2, interactive_running=True) == []
    assert batcher.take_pending(room=4, background_rows=1, interactive_running=True) == [requests[2]]
    # no chat running or waiting: a batch job takes every row but the one kept free for a chat (8 // 8)
    assert batcher.take_pending(room=6, background_rows=2) == [requests[3], requests[6]] and not batcher.held
    alone_ones = queued(batcher, "bbbb")
    assert batcher.take_pending(room=4, background_rows=4) == alone_ones[:3] and batcher.held == alone_ones[3:]
    batcher.held = []
    later = queued(batcher, "bi", n=3)  # a chat that does not fit waits at the head; nothing overtakes it
    assert batcher.take_pending(room=2, background_rows=6) == [] and batcher.held == [later[1], later[0]]
    assert batcher.take_pending(room=8) == [later[1]] and batcher.held == [later[0]]  # 3 rows: over the share


def test_the_shares_of_rows_for_background_requests_are_settings(shared):
    batcher = shared.batcher
    batcher.max_rows, batcher.shares = 8, BatchShares(beside_chats=0.5, reserve=0.25)
    requests = queued(batcher, "bbbbbbib")
    assert batcher.take_pending(room=8) == [requests[6], *requests[:4]]  # the chat, then half of 8 for the batch
    batcher.held = []
    alone_ones = queued(batcher, "bbbbbbbb")
    assert batcher.take_pending(room=8) == alone_ones[:6]  # no chat: all but a quarter of the rows (2)


def test_the_server_settings_reach_each_models_batcher(tmp_path, tiny_model_dir):
    from tunesmith.serve.app import create_app
    from tunesmith.serve.settings import ServeSettings

    app = create_app(ServeSettings(home=tmp_path, bases=[str(tiny_model_dir)], run_jobs=False,
                                   batch_share_beside_chats=0.5, chat_reserve=0.25))
    loaded = app.state.pool.get("tiny", str(tiny_model_dir))
    assert loaded.slot.batcher.shares == BatchShares(beside_chats=0.5, reserve=0.25)


def test_background_and_interactive_rows_answer_as_if_alone(shared, prompts):
    params = SamplingParams(max_new_tokens=6, temperature=0)
    shared.batcher.max_rows = 4
    with shared.lock:
        requests = [shared.batcher.submit(p, params, None, Usage(), background=True) for p in prompts] + \
                   [shared.batcher.submit(prompts[1], params, None, Usage())]
    answers = [collect(request)[0] for request in requests]
    assert shared.batcher.stats.admitted[0] == 2  # the chat and one background row (a quarter of 4)
    for prompt, answer in zip([*prompts, prompts[1]], answers):
        assert answer == alone(shared, prompt, params)[0]


@pytest.fixture
def talkative_model_dir(tmp_path, model, tokenizer):
    """This module's redrawn tiny model as a local base: its greedy answer depends on the prompt (the default
    tiny model answers every prompt alike, so a row answered from another row's cache would look right)."""
    model.save_pretrained(tmp_path / "talkative")
    tokenizer.save_pretrained(tmp_path / "talkative")
    return tmp_path / "talkative"


def test_concurrent_api_requests_share_one_batch_and_answer_as_if_alone(tmp_path, talkative_model_dir):
    from fastapi.testclient import TestClient

    from tunesmith.registry import keys
    from tunesmith.serve.app import create_app
    from tunesmith.serve.settings import ServeSettings

    app = create_app(ServeSettings(home=tmp_path / "home", bases=[str(talkative_model_dir)], run_jobs=False))
    base = talkative_model_dir.name
    chat = lambda q, **extra: {"model": base, "messages": [{"role": "user", "content": q}], "temperature": 0,
                               "max_tokens": 6, **extra}
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {keys.create_key(app.state.db)[1]}"}
        post = lambda path, body: client.post(path, json=body, headers=headers)
        calls = [lambda: post("/v1/chat/completions", chat(QUESTIONS[0])).json(),
                 lambda: post("/v1/chat/completions", chat(QUESTIONS[1], n=2)).json(),
                 lambda: post("/v1/chat/completions", chat(QUESTIONS[0], stream=True)).text,
                 lambda: post("/v1/completions", {"model": base, "prompt": "The symbol for gold", "max_tokens": 4,
                                                  "temperature": 0}).json()]
        alone = [call() for call in calls]  # also loads the model
        shared = app.state.pool.loaded[base]
        together = in_threads(shared, calls)
    assert shared.batcher.stats.admitted[-1] == 4 and shared.batcher.stats.largest_batch >= 5
    for a, b in zip(alone, together):
        if isinstance(a, dict):
            for key in ("id", "created"):
                a.pop(key), b.pop(key)
    assert together[:2] + together[3:] == alone[:2] + alone[3:]
    answers = [alone[0]["choices"][0]["message"]["content"], alone[1]["choices"][0]["message"]["content"],
               alone[3]["choices"][0]["text"]]
    assert len(set(answers)) == 3, answers  # each prompt its own answer: a mix-up between rows would show
    assert together[0]["object"] == "chat.completion" and [c["index"] for c in together[1]["choices"]] == [0, 1]
    content = lambda sse: "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "")
                                  for line in sse.splitlines() if line.startswith("data: {"))
    assert content(together[2]) == content(alone[2]) == together[0]["choices"][0]["message"]["content"]
