"""Training batches of an in-memory split by index on its own device, in the order a DataLoader would give.

A `DataLoader` over a `TensorDataset` indexes one image at a time and stacks them, on the CPU; with the images
already on the device (uint8, for the whole run) a batch is one `index_select` there. `TensorBatches` draws the
same indices from the same sampler and consumes the same random numbers as `DataLoader(..., shuffle=True,
generator=g)` (its base-seed draw, then the sampler's), so the batches, and the run, are those of the DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import BatchSampler, Sampler


class TensorBatches:
    """(images, labels) batches of tensors that stay where they are (e.g. on the GPU), in `sampler`'s order."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, sampler: Sampler,
                 drop_last: bool = False, generator: torch.Generator | None = None) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.sampler, self.drop_last, self.generator = batch_size, sampler, drop_last, generator

    def __len__(self) -> int:
        return len(BatchSampler(self.sampler, self.batch_size, self.drop_last))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)  # the DataLoader's base seed draw
        order = torch.tensor(list(self.sampler), dtype=torch.long)  # the whole epoch's draws, as the DataLoader's
        order = order.to(self.images.device, non_blocking=True)
        count = len(self) * self.batch_size if self.drop_last else len(order)
        for i in range(0, count, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.images.index_select(0, idx), self.labels.index_select(0, idx)
