"""A 4D attention mask as the model's attention implementation reads it.

tunesmith builds its own 4D masks: block-diagonal causal masks over packed rows (train/packing.py) and the decoding
engine's prefill masks over slot caches. transformers passes a 4D mask to the attention as it is, and the two
implementations read it differently: sdpa takes a bool mask (True = may attend), while its eager attention adds
the mask to the scores. A bool mask given to eager attention adds ones and zeros and masks nothing: every token
would see the tokens after it and its packed neighbours (the demo's config with `attn_implementation: eager`
trained to loss 0.69 at step 300 against ~0.15, 2026-12-06). So for eager attention a bool mask becomes the
additive one: 0 where it may attend, the dtype's lowest value where not (transformers' own eager masks)."""
import torch
from transformers import PreTrainedModel


def adds_its_mask(model: PreTrainedModel) -> bool:
    """The model's attention adds a 4D mask to its scores (transformers' eager attention) instead of reading a
    bool one (sdpa)."""
    return getattr(model.config, "_attn_implementation", None) == "eager"


def for_attention(model: PreTrainedModel, mask: torch.Tensor) -> torch.Tensor:
    """`mask` (bool, True = may attend, or already additive) as `model`'s attention reads it."""
    if mask.dtype != torch.bool or not adds_its_mask(model):
        return mask
    dtype = model.dtype if model.dtype.is_floating_point else torch.float32
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)
