"""The test split is sealed outside final runs: a search trial never reads, resizes or scores a test image."""

import pytest

from harness.core.config import TrialConfig
from harness.data.bundle import SealedSplit, SealedSplitError
from harness.data.registry import load_dataset
from harness.train.loop import fit


def test_a_sealed_split_knows_its_size_and_nothing_else():
    test = load_dataset("digits:0-4").test
    sealed = SealedSplit(test)
    assert len(sealed) == len(test) and sealed.image_size == 32 and sealed.resized(64) is sealed
    assert sealed.resize_bytes(64) == test.resize_bytes(64)  # a search prepares its data as its final does
    for touch in (lambda s: s.labels, lambda s: s.images, lambda s: list(s.batches(8)), lambda s: s.dataset()):
        with pytest.raises(SealedSplitError, match="the test split is sealed"):
            touch(sealed)


@pytest.mark.parametrize("method", ["linear_probe", "finetune"])
def test_a_search_trial_never_touches_test_and_trains_as_its_final_does(source_checkpoint, method):
    """linear_probe caches features of every split it reads: a search trial must not compute test's."""
    values = {"dataset": "digits:5-9", "backbone": "resnet8", "weights": f"checkpoint:{source_checkpoint}",
              "method": method, "epochs": 2, "samples_per_class": 10}
    search = fit(TrialConfig.from_dict({**values, "evaluate_test": False}))
    final = fit(TrialConfig.from_dict({**values, "evaluate_test": True}))
    assert search.summary["test"] is None and 0 <= final.summary["test"]["accuracy"] <= 1
    assert search.summary["data"]["test"] == final.summary["data"]["test"] > 0  # the size is known, no more
    curve = lambda s: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in s["history"]]  # noqa: E731
    assert curve(search.summary) == curve(final.summary)  # sealing changes nothing of the training
