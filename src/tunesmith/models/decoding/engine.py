"""The engine: the rows decoded together on one model, one forward pass per step over a shared KV cache.

Each row is one choice of one request, with its own slot in the batch's KV cache (models/decoding/slot_cache.py), its
own position (count of its tokens so far), adapter, sampling settings and finish condition. New requests are
prefilled in groups of similar length (right-padded), their keys and values written straight into their
slots, each group's first tokens streamed before the next group's prefill. A request arriving mid-generation
starts at the next step instead of waiting for the batch to end. Finished and cancelled rows leave at once:
the batch's last rows move into the slots they free.

Who calls it: the batcher thread (serve/batcher.py) admits requests and runs `step` under the model's lock.
What it calls: sampling.py chooses each row's next token, detokenize.py turns a row's tokens into text.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from peft import PeftModel

from tunesmith.models.argmax import argmax
from tunesmith.models.attention_mask import for_attention
from tunesmith.models.decoding.decode_step import llama_decoder
from tunesmith.models.decoding.constraints import constrained
from tunesmith.models.decoding.detokenize import ChoiceText
from tunesmith.models.decoding.penalties import adjusts_logits, penalized
from tunesmith.models.decoding.prefix_store import MIN_REUSE, PrefixStore, shared_length
from tunesmith.models.decoding.requests import Delta, GenerationRequest, TokenLogprob
from tunesmith.models.decoding.sampling import choose_tokens
from tunesmith.models.decoding.slot_cache import SlotCache
from tunesmith.models.decoding.stacked_lora import adapters_key, stacked_lora

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch
# Most (padded) prompt tokens in one prefill pass; a longer prompt goes alone. Each pass's rows stream their first
# tokens before the next pass starts. Measured (benchmarks/serve_throughput.py, serve_16, 2 threads, clients in
# their own process): TTFT p50 0.45-0.60 s at 160 against 0.56-0.93 s at 1024, tokens/s within noise.
PREFILL_TOKENS = 160


class Row:
    """One choice: its generated text, and the deltas and finish it reports to its request."""

    def __init__(self, request: GenerationRequest, index: int, tokenizer, end_ids: set[int]):
        self.request, self.index, self.end_ids = request, index, end_ids
        self.text = ChoiceText(tokenizer, request.params.stop)
        self.generated = 0
        # the log-probabilities of the tokens not yet sent with a delta (None: not asked for), and how many were sent
        self.logprobs: list[TokenLogprob] | None = None if request.params.logprobs is None else []
        self.logprobs_sent = 0
        # how often it has generated each token, for its request's penalties (None: it asked for no penalty or bias)
        self.counts: Counter | None = Counter() if adjusts_logits(request.params) else None
        # the grammar's state after its tokens so far, when the request holds its answers to one (None: free text)
        self.matcher = request.params.grammar.start() if request.params.grammar is not None else None

    def accept(self, token: int, logprob: TokenLogprob | None = None) -> bool:
        """Take the next token (and its log-probability, when the request asked); report the text it makes safe to
        send. True once the row is finished."""
        self.request.usage.completion_tokens += 1
        self.generated += 1
        if self.counts is not None:
            self.counts[token] += 1
        if self.matcher is not None and not self.matcher.consume_token(token):  # its mask allowed no token at all
            self.request.fail(RuntimeError(f"the answer's grammar took no token: {self.matcher.get_error()}"))
            return True
        end_of_turn = token in self.end_ids
        if self.logprobs is not None and logprob is not None and not end_of_turn:  # the end token writes no text
            self.logprobs.append(logprob)
        delta = self.text.add(token, end_of_turn)
        if self.text.finish_reason is None and self.generated >= self.request.params.max_new_tokens:
            self.text.finish_reason = "length"
            delta += self.text.flush()
        finish = self.text.finish_reason
        if delta or finish:
            self.request.out.put(Delta(self.index, delta, finish, self.take_logprobs()))
        if finish is not None:
            self.request.rows_left -= 1
            if self.request.rows_left == 0:
                self.request.out.put(None)
        return finish is not None

    def take_logprobs(self) -> list[TokenLogprob] | None:
        """The log-probabilities of the tokens behind the text released so far and not sent before; after a stop
        string, not those of the tokens that begin at or after it (the answer ends before it)."""
        if self.logprobs is None:
            return None
        entries = self.logprobs
        if self.text.cut is not None:
            entries = entries[: max(0, self.text.tokens_through(self.text.cut) - self.logprobs_sent)]
        self.logprobs, self.logprobs_sent = [], self.logprobs_sent + len(entries)
        return entries


def token_logprobs(logits: torch.Tensor, rows: list[Row], tokens: list[int]) -> list[TokenLogprob | None] | None:
    """Per row, its chosen token's log-probability and its request's likeliest tokens (logits (B, V), log-softmax
    in float32); None when no row asked, so a batch without such requests pays nothing."""
    asked = [i for i, row in enumerate(rows) if row.request.params.logprobs is not None]
    if not asked:
        return None
    logp = torch.log_softmax(logits[asked].float(), dim=-1)  # (k, V)
    chosen = logp.gather(1, torch.tensor([[tokens[i]] for i in asked]))[:, 0].tolist()
    most = max(rows[i].request.params.logprobs for i in asked)
    top_values, top_ids = logp.topk(most, dim=-1) if most else (logp[:, :0], logp[:, :0].long())  # (k, most)
    found: list[TokenLogprob | None] = [None] * len(rows)
    for j, i in enumerate(asked):
        k = rows[i].request.params.logprobs
        found[i] = TokenLogprob(tokens[i], chosen[j], list(zip(top_ids[j, :k].tolist(), top_values[j, :k].tolist())))
    return found


def choose_for_rows(logits: torch.Tensor, rows: list[Row]) -> list[int]:
    """Next token per row from logits (B, V), with each row's own sampling settings.

    The rows of one sampling request draw from its generator in choice order, wherever they sit in the batch; a
    request's penalties and logit bias (models/decoding/penalties.py) apply to its rows first, then its grammar's
    mask (models/decoding/constraints.py)."""
    adjusted = penalized(logits, [(i, row.request.params, row.counts) for i, row in enumerate(rows)
                                  if row.counts is not None])
    logits = constrained(adjusted, [(i, row.matcher) for i, row in enumerate(rows) if row.matcher is not None],
                         owned=adjusted is not logits)  # the penalties' copy is masked in place: one copy, not two
    groups: dict[int, tuple[torch.Generator, list[int]]] = {}
    for i, row in enumerate(rows):
        if row.request.generator is not None:
            groups.setdefault(id(row.request), (row.request.generator, []))[1].append(i)
    if not groups:  # all greedy (argmax of bf16 logits is 5x slower than casting them first)
        return argmax(logits.float()).tolist()
    params = [row.request.params for row in rows]
    temperature = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params])
    top_p = torch.tensor([p.top_p for p in params])
    ordered = [(generator, sorted(indices, key=lambda i: rows[i].index)) for generator, indices in groups.values()]
    return choose_tokens(logits, temperature, top_p, ordered).tolist()


def burst_leaders(requests: list[GenerationRequest], prefixes: PrefixStore) -> set[int]:
    """The requests of one admission to prefill before the others: for each set of requests with the same adapter
    whose prompts begin alike (SmolLM2's default system prompt: the first 24 of ~38 tokens of a short question), the
    first of them, when that shared beginning is at least MIN_REUSE tokens longer than what the store holds for
    the others. Its prompt then goes to the store, and the rest prefill only what follows it. The store is asked
    only about prompts that have such a partner."""
    prompts = [np.asarray(request.prompt_ids) for request in requests]
    candidates: list[int] = []
    leaders: set[int] = set()
    for j, request in enumerate(requests):
        for i in candidates:
            if requests[i].adapter != request.adapter:
                continue
            shared = min(shared_length(prompts[i], prompts[j]), len(prompts[j]) - 1)
            if shared >= MIN_REUSE and shared >= prefixes.longest(request.adapter, request.prompt_ids)[1] + MIN_REUSE:
                leaders.add(i)
                break
        else:
            candidates.append(j)
    return leaders


def prefill_groups(widths: list[int], most: int) -> list[list[int]]:
    """Request indices per prefill pass, given the tokens each must prefill: fewest first (little padding), each
    pass at most `most` padded tokens unless one prompt alone is longer."""
    groups: list[list[int]] = []
    for i in sorted(range(len(widths)), key=lambda i: widths[i]):
        if not groups or widths[i] * (len(groups[-1]) + 1) > most:
            groups.append([])
        groups[-1].append(i)
    return groups


class RunningBatch:
    prefill_tokens = PREFILL_TOKENS  # most padded tokens in one prefill pass

    def __init__(self, tokenizer, end_ids: set[int]):
        self.tokenizer, self.end_ids = tokenizer, end_ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.rows: list[Row] = []  # row i lives in the cache's slot i
        self.lengths: list[int] = []  # (B,) tokens in each row's cache = the position of its next token
        self.next_tokens: list[int] = []  # (B,) the token each row feeds at the next step
        self.cache: SlotCache | None = None
        self.prefixes = PrefixStore()  # prompts prefilled before, outliving the cache (models/decoding/prefix_store.py)

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, model, requests: list[GenerationRequest]) -> None:
        """Prefill new requests and add their rows to the running batch, one prefill group at a time: a group's
        rows choose their first tokens (and stream them) before the next group is prefilled. A prompt that begins
        like one prefilled before prefills only the rest (models/decoding/prefix_store.py); in a burst of prompts that begin
        alike and find nothing stored, one of them is prefilled first so that the others find it."""
        if self.cache is None:
            self.cache = SlotCache.for_model(model)
        self.prefixes.bind(model, adapters_key(model) if isinstance(model, PeftModel) else None)
        leaders = burst_leaders(requests, self.prefixes)
        first = [request for i, request in enumerate(requests) if i in leaders]
        rest = [request for i, request in enumerate(requests) if i not in leaders]
        for part in (first, rest):
            if part:
                self.admit_after_prefixes(model, part)

    def admit_after_prefixes(self, model, requests: list[GenerationRequest]) -> None:
        """admit's prefill groups for these requests, each after the longest prefix the store holds for it."""
        found = [self.prefixes.longest(request.adapter, request.prompt_ids) for request in requests]
        reused = [min(shared, len(request.prompt_ids) - 1) for request, (_, shared) in zip(requests, found)]
        for group in prefill_groups([len(request.prompt_ids) - n for request, n in zip(requests, reused)],
                                    self.prefill_tokens):
            self.admit_group(model, [requests[i] for i in group], [(found[i][0], reused[i]) for i in group])

    def admit_group(self, model, requests: list[GenerationRequest], prefixes: list[tuple]) -> None:
        """One prefill pass for these requests, each after its stored prefix (entry, tokens reused); their rows
        choose their first tokens and join the batch."""
        first = len(self.rows)
        rows = [Row(r, i, self.tokenizer, self.end_ids) for r in requests for i in range(r.params.n)]
        slots = [first + sum(r.params.n for r in requests[:j]) for j in range(len(requests))]  # each request's first row
        self.cache.reserve(first + len(rows), max(len(r.prompt_ids) for r in requests))
        for slot, (entry, reused) in zip(slots, prefixes):
            if reused:
                self.cache.write_prefix(slot, entry.keys[:, :, :reused], entry.values[:, :, :reused])
        logits = self.prefill(model, requests, slots, [reused for _, reused in prefixes])  # (r, V)
        for request, slot in zip(requests, slots):
            self.prefixes.add(request.adapter, request.prompt_ids, *self.cache.read(slot, len(request.prompt_ids)))
        copies = [(slot, slot + k, len(r.prompt_ids)) for r, slot in zip(requests, slots) for k in range(1, r.params.n)]
        if copies:  # a request's n choices share its prefill: copy its slot to its other rows
            sources, targets, widths = zip(*copies)
            self.cache.copy_slots(list(sources), list(targets), max(widths))
            logits = logits[torch.tensor([j for j, r in enumerate(requests) for _ in range(r.params.n)])]  # (b, V)
        self.rows += rows
        self.lengths += [len(row.request.prompt_ids) for row in rows]
        self.next_tokens += [self.pad_id] * len(rows)
        tokens = choose_for_rows(logits, rows)
        self.advance(rows, tokens, first=first, logprobs=token_logprobs(logits, rows, tokens))

    def prefill(self, model, requests: list[GenerationRequest], slots: list[int], starts: list[int]) -> torch.Tensor:
        """Logits (r, V) of each request's last prompt token; its keys and values go to slots[i], after the
        starts[i] first tokens the slot already holds."""
        prompts = [request.prompt_ids[start:] for request, start in zip(requests, starts)]
        width = max(len(prompt) for prompt in prompts)
        mask = self.cache.start_prefill(slots, width, starts)  # (1, 1, T, T) or (r, 1, T, W)
        input_ids = torch.tensor([prompt + [self.pad_id] * (width - len(prompt)) for prompt in prompts])  # (r, T)
        positions = torch.tensor(starts)[:, None] + torch.arange(width)  # (r, T)
        last = torch.tensor([[len(prompt) - 1] for prompt in prompts])  # (r, 1): each prompt's last token
        return self.forward(model, [request.adapter for request in requests], input_ids=input_ids, attention_mask=mask,
                            position_ids=positions, logits_to_keep=last)[:, 0]

    def step(self, model) -> None:
        """One decoding step for every row: feed each row's last token, choose its next one."""
        mask = self.cache.start_decode(self.lengths)  # (B, 1, 1, W)
        adapters = [row.request.adapter for row in self.rows]
        input_ids, positions = torch.tensor(self.next_tokens), torch.tensor(self.lengths)  # (B,)
        logits = self.decode(model, adapters, input_ids, positions, mask)
        if logits is None:  # transformers' forward
            logits = self.forward(model, adapters, input_ids=input_ids.unsqueeze(1), attention_mask=mask,
                                  position_ids=positions.unsqueeze(1))[:, -1]  # (B, V)
        self.lengths = [length + 1 for length in self.lengths]
        tokens = choose_for_rows(logits, self.rows)
        self.advance(self.rows, tokens, first=0, logprobs=token_logprobs(logits, self.rows, tokens))

    def decode(self, model, adapters: list[str | None], input_ids, positions, mask) -> torch.Tensor | None:
        """Logits (B, V) of one decoding step through the written-out decoder (models/decoding/decode_step.py), each row with
        its adapter; None where it does not apply."""
        if not isinstance(model, PeftModel):
            decoder = llama_decoder(model)
            return None if decoder is None else decoder(input_ids, positions, mask, self.cache)
        lora = stacked_lora(model)
        decoder = llama_decoder(model.get_base_model(), adapters_key(model)) if lora is not None else None
        if decoder is None:
            return None
        with lora.rows(adapters):
            return decoder(input_ids, positions, mask, self.cache, lora if any(adapters) else None)

    def forward(self, model, adapters: list[str | None], **inputs) -> torch.Tensor:
        """The model's logits over the cache, each batch row with its own LoRA adapter (None = the base)."""
        causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
        inputs.update(cache=self.cache, use_cache=True, attention_mask=for_attention(causal_lm, inputs["attention_mask"]))
        if not isinstance(model, PeftModel):
            return model(**inputs).logits
        lora = stacked_lora(model)  # models/decoding/stacked_lora.py
        if lora is None:  # adapters the stacked path does not cover: peft's mixed batch
            return model(**inputs, adapter_names=[adapter or BASE_ADAPTER for adapter in adapters]).logits
        with lora.rows(adapters):
            return model(**inputs).logits

    def advance(self, rows: list[Row], tokens: list[int], first: int,
                logprobs: list[TokenLogprob | None] | None = None) -> None:
        """Rows self.rows[first:first + len(rows)] take their tokens (and log-probabilities, token_logprobs);
        finished rows leave the batch."""
        for offset, (row, token) in enumerate(zip(rows, tokens)):
            self.next_tokens[first + offset] = token
            row.accept(token, logprobs[offset] if logprobs is not None else None)
        self.drop_finished()

    def drop_finished(self) -> None:
        """Rows that finished or were cancelled leave; the last rows move into the slots they free."""
        leaving = [i for i, row in enumerate(self.rows)
                   if row.text.finish_reason is not None or row.request.cancelled.is_set() or row.request.rows_left == 0]
        if not leaving:
            return
        size = len(self.rows) - len(leaving)
        if not size:
            self.clear()
            return
        holes = [i for i in leaving if i < size]
        movers = [i for i in range(size, len(self.rows)) if i not in set(leaving)]  # as many as holes
        self.cache.copy_slots(movers, holes, max(self.lengths))
        for hole, mover in zip(holes, movers):
            self.rows[hole], self.lengths[hole], self.next_tokens[hole] = \
                self.rows[mover], self.lengths[mover], self.next_tokens[mover]
        del self.rows[size:], self.lengths[size:], self.next_tokens[size:]

    def fail(self, error: BaseException) -> None:
        for request in {id(row.request): row.request for row in self.rows}.values():
            request.fail(error)
        self.clear()

    def clear(self) -> None:
        self.rows, self.lengths, self.next_tokens, self.cache = [], [], [], None
