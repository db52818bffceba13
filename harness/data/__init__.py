"""Datasets: built-in offline sets and torchvision's catalogue, registered in DATASETS when the package loads."""

from harness.data import builtin  # noqa: F401  (digits, shapes, folder: first in `harness list`)
from harness.data import catalog  # noqa: F401  (torchvision's datasets with their standard splits)
from harness.data import detection  # noqa: F401  (shapes_det, voc, coco:PATH: detection datasets)
