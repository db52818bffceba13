"""transfer-harness: benchmark ways of transferring pretrained vision networks, tuned with Ray Tune."""

__version__ = "0.1.0"
