"""estimate: a run's peak memory, time and cost predicted before training, beside full finetuning and pretraining.

estimate (the recipe), cost_model (FLOPs and bytes from shapes), hardware (this CPU or a GPU table), probe (a few real steps), table (the CLI's rich view)."""
