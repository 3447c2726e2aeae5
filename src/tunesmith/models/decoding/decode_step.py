"""One decoding step of a Llama-family model (Llama, Qwen2, Mistral) written out over its own weights: the engine's step without
transformers' layer code.

A step feeds one token per row. Its matrix products read every weight once and cost nearly the same at 1 row as
at 16; the rest of transformers' forward (module calls, argument handling, mask and cache plumbing, output
objects: ~40 Python-level operations a layer) was about a third of the step. Here the step is the same
arithmetic in the same order, so the logits are bit-identical (tests/serve/test_decode_step.py):
  - RMSNorm in float32 as LlamaRMSNorm does it; rotary embedding from the model's own `rotary_emb`;
  - q/k/v and gate/up as one product each through their packed group (models/packed_linear.py), o and down
    through their packed weights, the output head through its own;
  - the row's key and value written into its slot of the cache (models/decoding/slot_cache.py), attention over the
    cache's columns with the grouped query heads folded onto their key/value heads, as transformers' sdpa path
    does for one query token.
Measured (SmolLM2-135M, bf16, packed, 2 threads, one step over the same cache, alternating; benchmarks/README.md,
2026-12-05): 6 rows 27.4 → 20.4 ms, 16 rows 38.0 → 30.5 ms; calling each linear as a module instead (so peft's
layers would apply) gave back 4 ms of that. The engine's 16 x 64 decode: 2.24-2.27 → 1.80-1.85 s.

With LoRA adapters stacked for the batch (models/decoding/stacked_lora.py), linears that carry LoRA layers go through their
stack: fused and packed ones as one `DirectLora` (two products: [W; A] and the masked B), others layer by layer
(`StackedLora.project`); linears without LoRA through their packed weights. Prefills stay on transformers'
forward (many tokens a row: its overhead is small there). Models this does not cover (other layer types, such
as Qwen3's normed q and k or Gemma's scaled embeddings, a sliding window, unpacked weights, peft's own mixed
batches) keep transformers' forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.lora import LoraLayer

from tunesmith.models.decoding.slot_cache import SlotCache
from tunesmith.models.packed_linear import packed_is_faster

FAMILIES = {  # causal LM class → (its model class, its decoder layer class): the layers this step writes out
    "LlamaForCausalLM": ("LlamaModel", "LlamaDecoderLayer"),
    "Qwen2ForCausalLM": ("Qwen2Model", "Qwen2DecoderLayer"),
    "MistralForCausalLM": ("MistralModel", "MistralDecoderLayer"),
}
SILU = ("SiLU", "SiLUActivation")  # torch's and transformers' modules whose forward is F.silu
# (key, its LlamaDecoder or None), kept on the model itself: the decoder refers to the model, so a WeakKeyDictionary
# value would keep its key alive and a model the pool lets go would never be freed; on the model it is one cycle
DECODER_ATTRIBUTE = "_tunesmith_decoder"


def llama_decoder(causal_lm, key=None) -> LlamaDecoder | None:
    """The model's decoder, or None where it does not apply; built again when `key` changes (a peft model's
    adapters: adding the first LoRA layers wraps the linears the decoder holds)."""
    known = causal_lm.__dict__.get(DECODER_ATTRIBUTE)
    if known is None or known[0] != key:
        decoder = LlamaDecoder(causal_lm) if LlamaDecoder.matches(causal_lm) else None
        known = causal_lm.__dict__[DECODER_ATTRIBUTE] = (key, decoder if decoder is not None and decoder.usable() else None)
    return known[1]


def base_of(linear: torch.nn.Module) -> torch.nn.Module:
    return linear.base_layer if isinstance(linear, LoraLayer) else linear


def packed_product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class Projection:
    """One linear, or sibling linears that read one input (q/k/v, gate/up), of one decoder layer."""

    def __init__(self, linears: list[torch.nn.Module]):
        self.linears = linears
        self.bases = [base_of(linear) for linear in linears]
        self.lora = any(isinstance(linear, LoraLayer) for linear in linears)
        grouped = self.bases[0].__dict__.get("packed_group")
        self.group = grouped[0] if grouped is not None else None
        self.columns = self.group.product.columns if self.group is not None else None
        self.direct: tuple = (None, None)  # (the StackedLora it was made for, its DirectLora or None)

    def usable(self) -> bool:
        """Packed as the decoder needs: siblings as one group in this order, a single linear on its own."""
        if len(self.bases) == 1:
            return "packed_weight" in self.bases[0].__dict__ and self.group is None
        return self.group is not None and self.group.layers == self.bases

    def __call__(self, x: torch.Tensor, lora) -> torch.Tensor:
        """The linears' outputs for x (rows, in) side by side, (rows, sum of outs); `lora`: the batch's stacked
        adapters, or None (base rows only)."""
        if lora is not None and self.lora:
            if self.direct[0] is not lora:
                self.direct = (lora, lora.direct(self.linears) if all(isinstance(l, LoraLayer) for l in self.linears) else None)
            direct = self.direct[1]
            if direct is None:  # stacked LoRA layer by layer: it takes (rows, T, in); siblings share one product of x
                x = x[:, None]
                outputs = [(lora.project(linear, x) if isinstance(linear, LoraLayer) else linear(x))[:, 0]
                           for linear in self.linears]
                return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            mask = lora.direct_mask(direct.mask_key)
            if mask is not None:
                return direct(x, mask)
        base = self.bases[0]
        # the plain products: float32 with few or many rows (models/packed_linear.py), or a lone linear's weight replaced
        if not packed_is_faster(x) or (self.group is None and base.packed_weight.weight is not base.weight):
            outputs = [F.linear(x, plain.weight, plain.bias) for plain in self.bases]
            return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
        if self.group is not None:
            return packed_product(x, *self.group.current())
        return packed_product(x, base.packed_weight.current(), base.bias)

    def split(self, both: torch.Tensor) -> list[torch.Tensor]:
        """Each sibling's columns of the joint output."""
        return [both[:, start:end] for start, end in self.columns]


class DecoderLayer:
    def __init__(self, layer):
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv = Projection([attention.q_proj, attention.k_proj, attention.v_proj])
        self.o = Projection([attention.o_proj])
        self.gate_up = Projection([mlp.gate_proj, mlp.up_proj])
        self.down = Projection([mlp.down_proj])
        self.norms = [(norm.weight, norm.variance_epsilon) for norm in (layer.input_layernorm, layer.post_attention_layernorm)]
        self.act = F.silu if type(mlp.act_fn).__name__ in SILU else mlp.act_fn

    def __call__(self, h, cos, sin, cache: SlotCache, index: int, mask, shape: tuple[int, int, int], lora):
        rows, (heads, kv_heads, head_dim) = h.shape[0], shape
        qkv = self.qkv(rms_norm(h, *self.norms[0]), lora)  # (rows, (heads + 2 kv_heads) head_dim)
        rotated = (heads + kv_heads) * head_dim  # q and k rotated as one tensor
        qk = rotate(qkv[:, :rotated].view(rows, heads + kv_heads, 1, head_dim), cos, sin)
        v = qkv[:, rotated:].view(rows, kv_heads, 1, head_dim)
        keys, values = cache.update(qk[:, heads:], v, index)  # (rows, kv_heads, W, head_dim)
        folded = qk[:, :heads].reshape(rows, kv_heads, heads // kv_heads, head_dim)  # each key/value head's query heads
        attended = F.scaled_dot_product_attention(folded, keys, values, attn_mask=mask)
        h = h + self.o(attended.reshape(rows, heads * head_dim), lora)
        gate, up = self.gate_up.split(self.gate_up(rms_norm(h, *self.norms[1]), lora))
        return h + self.down(self.act(gate) * up, lora)


def rms_norm(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm's arithmetic: in float32, back to h's dtype, times the weight."""
    x = h.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(h.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' apply_rotary_pos_emb for one tensor."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class LlamaDecoder:
    def __init__(self, causal_lm):
        self.lm = causal_lm
        config = causal_lm.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.shape = (config.num_attention_heads, config.num_key_value_heads, head_dim)
        self.layers = [DecoderLayer(layer) for layer in causal_lm.model.layers]
        self.head = Projection([causal_lm.lm_head])

    @staticmethod
    def matches(causal_lm) -> bool:
        """A Llama, Qwen2 or Mistral causal LM (the same decoder layer; Qwen2's q/k/v biases ride in the packed
        group) from transformers' classes, without a sliding window."""
        inner = getattr(causal_lm, "model", None)
        family = FAMILIES.get(type(causal_lm).__name__)
        return family is not None and type(inner).__name__ == family[0] \
            and not getattr(causal_lm.config, "sliding_window", None) \
            and all(type(layer).__name__ == family[1] for layer in inner.layers)

    def usable(self) -> bool:
        """Every linear packed as the decoder reads it (models/packed_linear.py: bf16 or float32 weights)."""
        projections = [self.head] + [p for layer in self.layers for p in (layer.qkv, layer.o, layer.gate_up, layer.down)]
        return all(projection.usable() for projection in projections)

    def __call__(self, input_ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: SlotCache,
                 lora=None) -> torch.Tensor:
        """Logits (B, V) for one token per row: input_ids and positions (B,), mask from cache.start_decode."""
        h = self.lm.model.embed_tokens(input_ids)  # (B, hidden)
        cos, sin = self.lm.model.rotary_emb(h, positions[:, None])  # (B, 1, head_dim)
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, 1, head_dim): over heads
        for index, layer in enumerate(self.layers):
            h = layer(h, cos, sin, cache, index, mask, self.shape, lora)
        norm = self.lm.model.norm
        return self.head(rms_norm(h, norm.weight, norm.variance_epsilon), lora)
