"""The training loop (loop.py: prepare, train, evaluate), the same for the CLI, Ray Tune trials and Ray Train
workers; its inputs, optimiser and cost figures; and the networks other runs start from (artifacts.py)."""
