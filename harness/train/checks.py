"""What a run refuses before it trains, checked without training: the one list of checks `harness train` meets
as it prepares a run, callable on its own so that `harness run` (and `--dry-run`) can apply it to every
configuration a search may draw before Ray starts (harness/study/preflight.py)."""

from __future__ import annotations

from typing import Any, Callable

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.catalog import CATALOG, missing_files
from harness.data.facts import dataset_facts
from harness.data.registry import DATASETS, dataset_task, parse_spec, spec_options
from harness.methods import METHODS
from harness.models.backbones import BACKBONES, stage_count
from harness.models.classifiers import lacks_classifier
from harness.models.weights import LoadedWeights, load_weights
from harness.tasks import task_named, task_of

Memo = dict[tuple[Any, ...], Any]


def _once(memo: Memo, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """`make()` once per key; a ConfigError is remembered and raised again for the same key."""
    if key not in memo:
        try:
            memo[key] = make()
        except ConfigError as e:
            memo[key] = e
    if isinstance(memo[key], ConfigError):
        raise memo[key]
    return memo[key]


def check_names(config: TrialConfig) -> None:
    """Fail fast, before any data is loaded, on unknown names, weights a method cannot take and knobs of
    other methods."""
    DATASETS.get(parse_spec(config.dataset)[0])
    BACKBONES.get(config.backbone)
    METHODS.get(config.method).check_config(config)
    task_named(dataset_task(config.dataset), f"dataset '{config.dataset}'").check_config(config)


def data_on_disk(spec: str) -> bool:
    """Whether a dataset can be read here: built in, a user's folder, or a catalogue dataset whose files exist
    (a missing one is listed by `harness run --dry-run` and fetched or refused by `harness run`)."""
    name = parse_spec(spec)[0]
    return name not in CATALOG or not missing_files(name)


def check_data(config: TrialConfig, weights: LoadedWeights, memo: Memo) -> None:
    """What the dataset refuses of `config` (class subset, few-shot size against the smallest class, the task's
    headline metric): from its facts where it declares them, no image read; else from its loaded splits."""
    facts = _once(memo, ("facts", config.dataset, config.split_seed),
                  lambda: dataset_facts(config.dataset, config.split_seed))
    if facts is None:
        from harness.train.inputs import load_data

        key = ("data", config.dataset, config.split_seed, config.samples_per_class, config.subset_seed,
               config.val_per_class, config.image_size, config.train_on_val, weights.network, config.weights)
        bundle = _once(memo, key, lambda: load_data(config, weights)[0])
        task_of(bundle).headline(bundle)
        return
    if config.samples_per_class:
        facts.check_few_shot(config.samples_per_class)
    task_of(facts).headline(facts)


def run_problems(config: TrialConfig, memo: Memo | None = None,
                 planned: dict[str, str] | None = None) -> list[ConfigError]:
    """Everything `harness train` would refuse in `config` before its first epoch, each independent problem
    once: names and knobs, the weights (file present, readable, of the right network, with its own classifier
    where the method keeps it), the dataset (spec,
    options, class subset, few-shot size against the smallest class, the task's headline metric) and the
    method's knobs against the backbone's stages (and the same for what the method trains first, a teacher).
    `memo` shares loaded weights and data between calls; `planned` maps checkpoint weights that a study
    writes before the run (its source networks) to the backbone they will hold."""
    memo = {} if memo is None else memo
    try:
        check_names(config)
    except ConfigError as e:
        return [e]
    problems: list[ConfigError] = []
    method = METHODS.get(config.method)
    weights = LoadedWeights("none")
    try:
        if config.weights in (planned or {}):
            weights = LoadedWeights("checkpoint", network=planned[config.weights])
        else:
            weights = _once(memo, ("weights", config.weights, config.backbone, method.any_source),
                            lambda: load_weights(config.weights, config.backbone, any_network=method.any_source))
    except ConfigError as e:
        problems.append(e)
    problem = lacks_classifier(weights, config.weights, config.method) if method.source_classifier else None
    if problem is not None and not problems:
        problems.append(problem)
    try:
        spec_options(config.dataset)
        if data_on_disk(config.dataset):
            check_data(config, weights, memo)
    except ConfigError as e:
        problems.append(e)
    try:
        method.check(config, stage_count(weights.network or config.backbone))
        job = method.preparation(config)
    except ConfigError as e:
        return [*problems, e]
    return problems + (run_problems(job.config, memo, planned) if job is not None else [])

