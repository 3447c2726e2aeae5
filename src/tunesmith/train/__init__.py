"""train: finetuning a base model — one recipe per method (sft.py, dpo.py, classify.py; recipes.py picks one),
each readable top to bottom (set up → loop → save) over an objective (objective.py: what the method optimises).

What they share lives once each: data order, LR schedule, packing, loss, loop, checkpoints, export, multi-process."""
