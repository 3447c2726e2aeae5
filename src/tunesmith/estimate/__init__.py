"""estimate: a run's peak memory, time and cost before training, beside full finetuning and pretraining.

estimate (the recipe), cost_model (FLOPs, bytes), hardware (this CPU, GPU table), probe (real steps), table (CLI view)."""
