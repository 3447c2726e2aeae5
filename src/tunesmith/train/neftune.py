"""NEFTune (Jain et al. 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"): uniform noise on the
input embeddings of training forwards, as TRL's and Axolotl's `neftune_noise_alpha` add it.

Each embedding gets noise from U(-m, m) per element, m = alpha / √(L × d), L the row's length in tokens (a packed
row's whole width, as transformers' Trainer computes it for packed batches) and d the hidden size. Only forwards
that train get it: the module in training mode with gradients on, so validation and the no-gradient reference
forwards (replay's kl_to_base, the base's own predictions) see the clean embeddings. The noise is drawn from
torch's generator, which checkpoints save and restore, so a resumed run draws what the uninterrupted one would.
"""
from __future__ import annotations

import torch


def add_neftune(model, alpha: float) -> torch.utils.hooks.RemovableHandle:
    """Noise on `model`'s input embeddings from now on; the handle's remove() takes it off."""
    embeddings = model.get_input_embeddings()

    def noisy(module: torch.nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if not (module.training and torch.is_grad_enabled()):
            return output
        magnitude = alpha / (output.shape[-2] * output.shape[-1]) ** 0.5
        return output + torch.empty_like(output).uniform_(-magnitude, magnitude)

    return embeddings.register_forward_hook(noisy)
