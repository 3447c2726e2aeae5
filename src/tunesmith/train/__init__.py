"""train: finetuning a base model — sft.py is the recipe (set up → loop → save), readable top to bottom.

What it calls lives once each: data order, LR schedule, packing, loss, loop, checkpoints, export, multi-process."""
