"""The training loop, the same for the CLI, Ray Tune trials and Ray Train workers, and cached networks."""
