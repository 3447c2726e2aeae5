"""The running batch's KV cache: one preallocated slot per row, written in place at the row's own positions.

keys, values: (layers, slots, kv_heads, columns, head_dim). Row i of the running batch lives in slot i; its
token at position p sits in column p (no padding), so
  - a decode step writes one column per row (one indexed copy per layer) and attends over columns
    0 .. longest row, masked per row (B, 1, 1, W);
  - a prefill writes its right-padded prompts straight into their slots (one indexed copy per layer), after
    the prefix a slot already holds when the prompt begins like one prefilled before (models/decoding/prefix_store.py);
  - a row that leaves is replaced by the batch's last row (one copy of that slot), and n choices of one
    prompt copy its prefilled slot.
Measured before (engine with transformers' DynamicCache, SmolLM2-135M, 16 rows, 1 thread): the cache's
torch.cat of every layer's whole cache at every step was 13% of a decode step, and left-padding joined
caches to one width made every row attend over the longest row's padding.

transformers' StaticCache is preallocated too, but its rows share one write position (`cumulative_length`):
rows that join at different steps with prompts of different lengths would have to be shifted to line up,
and it attends over all `max_cache_len` columns. Capacity here grows by doubling when a longer row or more
rows need it (rare: log2 of the longest row), and the whole cache is dropped when the batch empties.

The model calls `update(keys, values, layer)` in every attention layer (Llama, Qwen2, Mistral, Gemma do);
before each forward the engine says where that forward's tokens go (`start_decode` / `start_prefill`).
"""
from __future__ import annotations

import torch
from transformers import Cache


class SlotCache(Cache):
    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device | str = "cpu"):
        super().__init__(layers=[])
        self.shape, self.dtype, self.device = (layers, kv_heads, head_dim), dtype, torch.device(device)
        self.keys = torch.empty(layers, 0, kv_heads, 0, head_dim, dtype=dtype, device=self.device)
        self.values = torch.empty_like(self.keys)
        self.decoding = False
        self.slots: torch.Tensor | None = None  # (B,) slot of each row of this forward
        self.columns: torch.Tensor | None = None  # decode: (B,) each row's column (= its position); prefill: (r, T)
        self.width = 0  # columns 0 .. width-1 are read

    @classmethod
    def for_model(cls, model) -> SlotCache:
        config = model.config.get_text_config()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        weight = model.get_input_embeddings().weight
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        dtype = weight.dtype  # under autocast (answers sampled inside a bf16 training step), the products' dtype
        if torch.is_autocast_enabled(weight.device.type):
            dtype = torch.get_autocast_dtype(weight.device.type)
        return cls(config.num_hidden_layers, kv_heads, head_dim, dtype, weight.device)

    @property
    def capacity(self) -> tuple[int, int]:
        """(slots, columns) allocated."""
        return self.keys.shape[1], self.keys.shape[3]

    def reserve(self, slots: int, columns: int) -> None:
        """Room for `slots` rows of `columns` tokens; grows (doubling) and keeps what is stored."""
        have_slots, have_columns = self.capacity
        if slots <= have_slots and columns <= have_columns:
            return
        slots = have_slots if slots <= have_slots else max(slots, 2 * have_slots)
        columns = have_columns if columns <= have_columns else -(-max(columns, 2 * have_columns) // 64) * 64
        layers, kv_heads, head_dim = self.shape
        for name in ("keys", "values"):
            grown = torch.zeros(layers, slots, kv_heads, columns, head_dim, dtype=self.dtype, device=self.device)
            grown[:, :have_slots, :, :have_columns] = getattr(self, name)
            setattr(self, name, grown)

    def start_decode(self, lengths: list[int]) -> torch.Tensor:
        """Rows 0..B-1 each add one token at column lengths[i]; returns the additive attention mask (B, 1, 1, W)
        in the cache's dtype: 0 where a row attends, -inf where it does not.

        Additive, not bool: sdpa turns a bool mask into this one in every layer (fill, scalar_tensor, where:
        30 times a step for SmolLM2), and the result is the same."""
        self.decoding, self.width = True, max(lengths) + 1
        self.reserve(len(lengths), self.width)
        self.slots = torch.arange(len(lengths), device=self.device)
        self.columns = torch.tensor(lengths, device=self.device)
        beyond = torch.arange(self.width, device=self.device) > self.columns.unsqueeze(1)  # (B, W)
        mask = torch.zeros(len(lengths), self.width, dtype=self.dtype, device=self.device).masked_fill_(beyond, float("-inf"))
        return mask[:, None, None, :]

    def start_prefill(self, slots: list[int], width: int, starts: list[int] | None = None) -> torch.Tensor:
        """Prompts right-padded to `width` tokens; prompt i goes to slot slots[i], its token t to column starts[i] + t
        (starts: how many of its first tokens the slot already holds, from the prefix store; default none).

        Returns the attention mask, bool: causal (1, 1, T, T) when no slot holds tokens yet, else (r, 1, T, W) over
        columns 0 .. W-1, W = max(starts) + T, token t of prompt i seeing columns 0 .. starts[i] + t. Padding sits
        after each prompt, so no real token sees it; its keys land in columns past the prompt, which decode masks
        out and then overwrites."""
        self.decoding = False
        starts = starts or [0] * len(slots)
        self.width = max(starts) + width
        self.reserve(max(slots) + 1, self.width)
        self.slots = torch.tensor(slots, device=self.device)
        if not any(starts):
            self.columns = None
            return torch.ones(width, width, dtype=torch.bool, device=self.device).tril()[None, None]
        self.columns = torch.tensor(starts, device=self.device)[:, None] + torch.arange(width, device=self.device)  # (r, T)
        return (torch.arange(self.width, device=self.device) <= self.columns[..., None])[:, None]  # (r, 1, T, W)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Store this forward's keys/values (B, kv_heads, T, head_dim); return what the layer attends over."""
        keys, values = self.keys[layer_idx], self.values[layer_idx]  # (slots, kv_heads, columns, head_dim)
        # under autocast, RoPE's float32 cos/sin promote the keys while the values stay bf16: both to the cache's
        # dtype (a no-op where they have it, as when serving)
        key_states, value_states = key_states.to(keys.dtype), value_states.to(values.dtype)
        if self.decoding:  # (B, kv, 1, d): row i → slot i, column columns[i]
            keys[self.slots, :, self.columns] = key_states[:, :, 0]
            values[self.slots, :, self.columns] = value_states[:, :, 0]
            rows = key_states.shape[0]
            return keys[:rows, :, : self.width], values[:rows, :, : self.width]
        if self.columns is None:  # prefill (r, kv, T, d) of whole prompts: prompt i → slot slots[i], columns 0..T-1
            width = key_states.shape[2]
            keys[self.slots, :, :width] = key_states
            values[self.slots, :, :width] = value_states
            return key_states, value_states
        # prefill after stored prefixes: token t of prompt i → slot slots[i], column columns[i, t]
        keys[self.slots[:, None], :, self.columns] = key_states.transpose(1, 2)
        values[self.slots[:, None], :, self.columns] = value_states.transpose(1, 2)
        return keys[self.slots, :, : self.width], values[self.slots, :, : self.width]

    def write_prefix(self, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Slot `slot` takes a stored prefix's keys and values (layers, kv_heads, T, head_dim) in columns 0..T-1."""
        self.reserve(slot + 1, keys.shape[2])
        self.keys[:, slot, :, : keys.shape[2]] = keys
        self.values[:, slot, :, : values.shape[2]] = values

    def read(self, slot: int, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot `slot`'s first `columns` keys and values (layers, kv_heads, columns, head_dim), views."""
        return self.keys[:, slot, :, :columns], self.values[:, slot, :, :columns]

    def copy_slots(self, sources: list[int], targets: list[int], columns: int) -> None:
        """Slot targets[i] takes slot sources[i]'s first `columns` columns (a row moving, or a choice's copy)."""
        if sources:
            source, target = torch.tensor(sources, device=self.device), torch.tensor(targets, device=self.device)
            self.keys[:, target, :, :columns] = self.keys[:, source, :, :columns]
            self.values[:, target, :, :columns] = self.values[:, source, :, :columns]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width if self.decoding else 0
