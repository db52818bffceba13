"""The engine's speed work keeps its results: batches indexed where the images live are the DataLoader's,
in-memory data goes to a GPU only when it fits, `compile: true` records its compile time apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from harness.core.config import TrialConfig
from harness.data.batches import TensorBatches
from harness.data.bundle import SealedSplit, Split
from harness.train.loop import fit
from harness.train.placement import (
    keeps_on_device,
    place_splits,
    split_bytes,
    sync_every,
)


def _data(n: int = 23) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g), torch.arange(n) % 3


@pytest.mark.parametrize("batch_size, drop_last", [(5, False), (11, True)])
def test_tensor_batches_are_the_dataloaders_batches_and_draws(batch_size: int, drop_last: bool) -> None:
    images, labels = _data()
    ours_gen, theirs_gen = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    ours = TensorBatches(images, labels, batch_size, RandomSampler(labels, generator=ours_gen), drop_last, ours_gen)
    theirs = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True, generator=theirs_gen,
                        drop_last=drop_last)
    assert len(ours) == len(theirs)
    for _ in range(2):  # two epochs: the generator moves on alike
        pairs = list(zip(ours, theirs, strict=True))
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)
    assert torch.equal(ours_gen.get_state(), theirs_gen.get_state())


def test_tensor_batches_of_a_distributed_sampler_draw_the_global_stream_as_the_dataloader() -> None:
    images, labels = _data(20)
    out = []
    for make in (lambda s: TensorBatches(images, labels, 4, s, False, None),
                 lambda s: DataLoader(TensorDataset(images, labels), batch_size=4, sampler=s)):
        torch.manual_seed(3)
        sampler = DistributedSampler(labels, num_replicas=2, rank=1, shuffle=True, seed=5)
        sampler.set_epoch(2)
        out.append(([y.tolist() for _, y in make(sampler)], torch.rand(1).item()))
    assert out[0] == out[1]


def test_in_memory_images_go_to_a_gpu_only_when_they_take_a_quarter_of_it_at_most() -> None:
    assert keeps_on_device(2**30, 4 * 2**30) and not keeps_on_device(2**30 + 1, 4 * 2**30)
    assert not keeps_on_device(10, 0)  # the CPU: nothing moves
    images, labels = _data()
    splits = {"train": Split(images, labels), "test": SealedSplit(Split(images, labels))}
    assert split_bytes(splits) == images.numel()
    assert place_splits(splits, torch.device("cpu")) is splits
    placed = place_splits(splits, torch.device("cpu"), device_bytes=4 * images.numel())
    assert placed["test"] is splits["test"] and placed["train"].labels is labels
    assert place_splits(splits, torch.device("cpu"), device_bytes=images.numel()) is splits


def test_the_divergence_flag_is_read_every_step_on_the_cpu_and_every_32_on_a_gpu() -> None:
    assert sync_every(torch.device("cpu")) == 1 and sync_every(torch.device("cuda")) == 32


def test_compile_trains_the_same_network_and_records_compile_time_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_COMPILE_BACKEND", "eager")  # dynamo's capture without inductor's C++ build
    base = {"dataset": "digits:0-2", "samples_per_class": 8, "backbone": "resnet8", "method": "scratch", "epochs": 1,
                "batch_size": 8}
    plain = fit(TrialConfig(**base)).summary
    compiled = fit(TrialConfig(**base, compile=True)).summary
    assert compiled["cost"]["compile_seconds"] > 0 and plain["cost"]["compile_seconds"] == 0
    np.testing.assert_allclose(compiled["history"][0]["train_loss"], plain["history"][0]["train_loss"], rtol=1e-5)
    assert compiled["config"]["compile"] is True
    assert TrialConfig(**base).identity() != TrialConfig(**base, compile=True).identity()


def test_files_decoded_on_the_device_match_the_workers_decoding_and_train(tmp_path, monkeypatch) -> None:
    from catalog_fixtures import write_eurosat

    from harness.data.registry import load_dataset
    from harness.data.root import DATA_ENV

    write_eurosat(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    monkeypatch.setenv("HARNESS_LOADER_WORKERS", "0")
    split = load_dataset("eurosat?size=32").train
    on_device = split.decoding_on(torch.device("cpu"))
    assert on_device.decode_device == "cpu" and split.decode_device == ""
    ours, theirs = torch.cat(list(on_device.batches(7))), torch.cat(list(split.batches(7)))
    assert ours.shape == theirs.shape == (len(split), 3, 32, 32) and ours.dtype == torch.uint8
    assert (ours.float() - theirs.float()).abs().mean() < 2  # one JPEG decoder, two resizers
    config = TrialConfig(dataset="eurosat?size=32", backbone="resnet8", method="scratch", epochs=1, batch_size=8,
                         decode_on_device=True)
    summary = fit(config).summary
    assert summary["status"] == "ok" and summary["cost"]["train_images_per_s"] > 0
