"""Networks: backbones cut into stages, their weights and the network files the harness writes."""
