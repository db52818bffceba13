"""What the pre-flight checks of a dataset, known without its images: class names, training images per class,
task and headline metric. A dataset that declares what it holds before its split (a factory's `labelled`, as
digits and shapes do in harness.data.builtin) has facts computed by the split's own arithmetic
(harness.data.stratify), with no torch or scikit-learn; any other has none and is checked by loading it."""

from __future__ import annotations

from dataclasses import dataclass

from harness.data.classes import check_few_shot_size, check_few_shot_task, subset_classes
from harness.data.registry import (DATASETS, PATH_DATASETS, dataset_options, dataset_task, headline_metric,
                                   parse_spec, spec_options)


@dataclass(frozen=True)
class DataFacts:
    """A dataset spec's splits as the checks see them (a class subset applied, before any few-shot draw)."""

    name: str
    class_names: tuple[str, ...]
    train_counts: tuple[int, ...]
    task: str
    metric: str

    def check_few_shot(self, samples_per_class: int) -> None:
        """What a few-shot draw of `samples_per_class` is refused for, in the order `derive` refuses it."""
        check_few_shot_task(self.name, self.task, samples_per_class)
        check_few_shot_size(self.name, self.class_names, self.train_counts, samples_per_class)


def dataset_facts(spec: str, split_seed: int = 0) -> DataFacts | None:
    """The facts of `spec`'s splits for a split seed, refusing what loading it refuses in the same words; None
    where its dataset declares nothing to compute them from or its split would be refused (loading it says why)."""
    name, arg, _ = parse_spec(spec)
    declare = getattr(DATASETS.get(name), "labelled", None)
    if declare is None or name in PATH_DATASETS:
        return None
    labelled = declare(**{**dataset_options(name), **spec_options(spec)})
    counts = labelled.train_counts(split_seed)
    if counts is None:
        return None
    task, names = dataset_task(spec), labelled.class_names
    if arg is not None:
        chosen = subset_classes(spec, arg, task, names)
        names, counts = tuple(names[i] for i in chosen), tuple(counts[i] for i in chosen)
    return DataFacts(spec, names, counts, task, headline_metric(spec))
