"""The engine: the rows decoded together on one model, one forward pass per step over a shared KV cache.

Each row is one choice of one request. Rows are left-padded into a common width; every row keeps its own
positions (count of its real tokens), its own adapter, sampling settings and finish condition. New rows are
prefilled on their own and their cache is spliced into the running one (both padded on the left to the same
width), so a request arriving mid-generation starts at the next step instead of waiting for the batch to end.
Finished and cancelled rows are cut out of the cache at once.

Who calls it: the batcher thread (serve/batcher.py) admits requests and runs `step` under the model's lock.
What it calls: sampling.py chooses each row's next token, detokenize.py turns a row's tokens into text.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import DynamicCache

from tunesmith.models.chat import left_pad
from tunesmith.serve.detokenize import ChoiceText
from tunesmith.serve.requests import Delta, GenerationRequest
from tunesmith.serve.sampling import choose_tokens

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


class Row:
    """One choice: its generated text, and the deltas and finish it reports to its request."""

    def __init__(self, request: GenerationRequest, index: int, tokenizer, end_ids: set[int]):
        self.request, self.index, self.end_ids = request, index, end_ids
        self.text = ChoiceText(tokenizer, request.params.stop)
        self.generated = 0

    def accept(self, token: int) -> bool:
        """Take the next token; report the text it makes safe to send. True once the row is finished."""
        self.request.usage.completion_tokens += 1
        self.generated += 1
        delta = self.text.add(token, token in self.end_ids)
        if self.text.finish_reason is None and self.generated >= self.request.params.max_new_tokens:
            self.text.finish_reason = "length"
            delta += self.text.flush()
        finish = self.text.finish_reason
        if delta or finish:
            self.request.out.put(Delta(self.index, delta, finish))
        if finish is not None:
            self.request.rows_left -= 1
            if self.request.rows_left == 0:
                self.request.out.put(None)
        return finish is not None


def adapter_arguments(model, rows: list[Row]) -> dict:
    """peft mixed-batch inference: one adapter name per row (the base model takes none)."""
    if not isinstance(model, PeftModel):
        return {}
    return {"adapter_names": [row.request.adapter or BASE_ADAPTER for row in rows]}


def choose_for_rows(logits: torch.Tensor, rows: list[Row]) -> list[int]:
    """Next token per row from logits (B, V), with each row's own sampling settings."""
    params = [row.request.params for row in rows]
    temperature = torch.tensor([p.temperature if p.temperature > 0 else 1.0 for p in params])
    top_p = torch.tensor([p.top_p for p in params])
    groups: dict[int, tuple[torch.Generator, list[int]]] = {}
    for i, row in enumerate(rows):
        if row.request.generator is not None:
            groups.setdefault(id(row.request), (row.request.generator, []))[1].append(i)
    return choose_tokens(logits, temperature, top_p, list(groups.values())).tolist()


def pad_cache_left(cache: DynamicCache, columns: int) -> None:
    if columns:
        for layer in cache.layers:  # keys/values: (B, heads, T, head_dim)
            layer.keys = F.pad(layer.keys, (0, 0, columns, 0))
            layer.values = F.pad(layer.values, (0, 0, columns, 0))


class RunningBatch:
    def __init__(self, tokenizer, end_ids: set[int]):
        self.tokenizer, self.end_ids = tokenizer, end_ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.rows: list[Row] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (B, S): 1 where the cache holds a real token
        self.positions: torch.Tensor | None = None  # (B,): real tokens so far = the next token's position
        self.next_tokens: list[int] = []  # (B,) the token each row feeds at the next step

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, model, requests: list[GenerationRequest]) -> None:
        """Prefill new requests together, choose their rows' first tokens and join the running batch."""
        rows = [Row(r, i, self.tokenizer, self.end_ids) for r in requests for i in range(r.params.n)]
        firsts = [row for row in rows if row.index == 0]  # one prefill per request, shared by its n rows
        input_ids, mask = left_pad([row.request.prompt_ids for row in firsts], self.pad_id)  # (r, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True, logits_to_keep=1, **adapter_arguments(model, firsts)).logits[:, -1]  # (r, V)
        request_of_row = torch.tensor([i for i, request in enumerate(requests) for _ in range(request.params.n)])
        if len(rows) > len(requests):  # copy each request's cache, mask and logits to its n rows: (b, ...)
            cache.batch_select_indices(request_of_row)
            mask, logits = mask[request_of_row], logits[request_of_row]
        self.join(rows, cache, mask)
        self.advance(rows, choose_for_rows(logits, rows), first=len(self.rows) - len(rows))

    def join(self, rows: list[Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        lengths = mask.sum(-1)  # (b,)
        if not self.rows:
            self.rows, self.cache, self.mask, self.positions = rows, cache, mask, lengths
            self.next_tokens = [self.pad_id] * len(rows)
            return
        width = max(self.mask.shape[1], mask.shape[1])
        pad_cache_left(self.cache, width - self.mask.shape[1])
        pad_cache_left(cache, width - mask.shape[1])
        for running, new in zip(self.cache.layers, cache.layers):
            running.keys = torch.cat([running.keys, new.keys])
            running.values = torch.cat([running.values, new.values])
        self.mask = torch.cat([F.pad(self.mask, (width - self.mask.shape[1], 0)), F.pad(mask, (width - mask.shape[1], 0))])
        self.positions = torch.cat([self.positions, lengths])
        self.rows += rows
        self.next_tokens += [self.pad_id] * len(rows)

    def step(self, model) -> None:
        """One decoding step for every row: feed each row's last token, choose its next one."""
        input_ids = torch.tensor(self.next_tokens).unsqueeze(1)  # (B, 1)
        self.mask = F.pad(self.mask, (0, 1), value=1)  # (B, S + 1)
        logits = model(input_ids=input_ids, attention_mask=self.mask, position_ids=self.positions.unsqueeze(1),
                       cache=self.cache, use_cache=True, **adapter_arguments(model, self.rows)).logits[:, -1]  # (B, V)
        self.positions = self.positions + 1
        self.advance(self.rows, choose_for_rows(logits, self.rows), first=0)

    def advance(self, rows: list[Row], tokens: list[int], first: int) -> None:
        """Rows self.rows[first:first + len(rows)] take their tokens; finished rows leave the batch."""
        for offset, (row, token) in enumerate(zip(rows, tokens)):
            self.next_tokens[first + offset] = token
            row.accept(token)
        self.drop_finished()

    def drop_finished(self) -> None:
        keep = [i for i, row in enumerate(self.rows)
                if row.text.finish_reason is None and not row.request.cancelled.is_set() and row.request.rows_left > 0]
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.clear()
            return
        index = torch.tensor(keep)
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[i] for i in keep]
        self.next_tokens = [self.next_tokens[i] for i in keep]
        self.mask, self.positions = self.mask[index], self.positions[index]
        self.trim_padding()

    def trim_padding(self) -> None:
        """Cut leading columns that no remaining row uses (the padding of rows that left)."""
        unused = int((self.mask.sum(0) == 0).cumprod(0).sum())
        if unused:
            self.mask = self.mask[:, unused:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., unused:, :], layer.values[..., unused:, :]

    def fail(self, error: BaseException) -> None:
        for request in {id(row.request): row.request for row in self.rows}.values():
            request.fail(error)
        self.clear()

    def clear(self) -> None:
        self.rows, self.cache, self.mask, self.positions, self.next_tokens = [], None, None, None, []
