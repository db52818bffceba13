"""Every shipped suite searches the design card's knobs (learning rate, dropout, batch size, epochs, freeze depth)
wherever a method has them, read from the built search space of each of its cells; nothing is run."""

import pytest

from harness.data.registry import dataset_task
from harness.study.spaces import Dist
from harness.study.suite import cells, load_suite, suites_dir

SHIPPED = sorted(p.stem for p in suites_dir().glob("*.yaml"))
CARD = {"lr", "dropout", "batch_size", "epochs", "freeze_depth"}
TRAINED = {"lr", "dropout", "batch_size", "epochs"}
# the design-card knobs each method's cells search (freeze_depth where the method has it)
SEARCHED = {
    "scratch": TRAINED, "linear_probe": TRAINED, "finetune": TRAINED, "partial": TRAINED | {"freeze_depth"},
    "multibranch": TRAINED, "distill": TRAINED, "feature_transfer": TRAINED, "l2sp": TRAINED,
    "label_mapping": TRAINED - {"dropout"},  # a map on the source's probabilities: no layer to drop out
    **{m: TRAINED | {"freeze_depth"} for m in ("fedavg", "fedprox", "fedbn", "fedadam")},
}
NOT_FOR_DETECTORS = {"dropout"}  # detection cells leave it out: a detector has no dropout head


def searched(space: dict) -> set[str]:
    return {k for k in CARD if isinstance(space.get(k), Dist)}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_cell_of_a_shipped_suite_searches_its_methods_design_card_knobs(name):
    for cell in cells(load_suite(name)):
        assert cell.method in SEARCHED, f"{cell.method}: add it to SEARCHED with the knobs it searches"
        expected = SEARCHED[cell.method]
        if dataset_task(cell.dataset.name) == "detection":
            expected = expected - NOT_FOR_DETECTORS
        assert searched(cell.space) == expected, f"{name}: {cell.label}"


def test_partial_and_an_augmentation_space_ship_in_the_big_suites():
    for name in ("seeds", "transfer12", "vtab1k"):
        assert "partial" in {c.method for c in cells(load_suite(name))}, name
    augmented = [c for name in SHIPPED for c in cells(load_suite(name))
                 if isinstance(c.space.get("augment"), Dist) and "randaugment" in c.space["augment"].args
                 and isinstance(c.space.get("mixup"), Dist) and isinstance(c.space.get("cutmix"), Dist)]
    assert {c.dataset.name for c in augmented} == {"imagenet_subset"}
