"""One generic training loop for every task: optimizer, schedule, precision, DDP, checkpoints, logging, resume."""
