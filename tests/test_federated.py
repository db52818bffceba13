"""Federated transfer (issue 17): the federated methods are the training loop with rounds, so their degenerate
settings must give exactly the centralised network, and the shards must split the data as alpha says."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.shards import client_shards, label_mix
from harness.train.loop import fit, prepare, train_round

# a tiny run: resnet8 on 100 digits images (dropout and augmentation off: the only randomness is the init and order)
BASE = {"dataset": "digits", "backbone": "resnet8", "samples_per_class": 10, "batch_size": 32, "lr": 0.05,
        "dropout": 0.0, "augment": "none", "warmup_epochs": 0.5, "seed": 3}


def config(**values: object) -> TrialConfig:
    return TrialConfig.from_dict({**BASE, **values})


def centralised(epochs: int) -> dict[str, torch.Tensor]:
    return fit(config(method="finetune", epochs=epochs)).model.state_dict()


def test_fedavg_with_one_client_for_one_round_is_centralised_training():
    federated = fit(config(method="fedavg", clients=1, epochs=1, local_epochs=2)).model.state_dict()
    assert_close(federated, centralised(epochs=2), rtol=0, atol=0)


def test_fedavg_with_identical_clients_is_centralised_training():
    p = prepare(config(method="fedavg", clients=3, epochs=1, local_epochs=2))
    p.federation.shards = [np.arange(len(p.inputs["train"]))] * 3  # every client holds the whole split
    train_round(p, 1)
    assert_close(p.model.state_dict(), centralised(epochs=2))

    one = prepare(config(method="fedavg", clients=1, epochs=2, local_epochs=1))
    same = prepare(config(method="fedavg", clients=3, epochs=2, local_epochs=1))
    same.federation.shards = [np.arange(len(same.inputs["train"]))] * 3
    for r in (1, 2):
        train_round(one, r)
        train_round(same, r)
    assert_close(same.model.state_dict(), one.model.state_dict())


def test_fedprox_with_mu_zero_is_fedavg():
    setting = {"clients": 4, "alpha": 0.5, "epochs": 2, "local_epochs": 1}
    prox = fit(config(method="fedprox", mu=0.0, **setting)).model.state_dict()
    avg = fit(config(method="fedavg", **setting)).model.state_dict()
    assert_close(prox, avg, rtol=0, atol=0)
    pulled = fit(config(method="fedprox", mu=1.0, **setting)).model.state_dict()
    assert not torch.allclose(pulled["head.1.weight"], avg["head.1.weight"])


def test_fedbn_keeps_every_clients_batchnorm_statistics_distinct():
    p = prepare(config(method="fedbn", clients=3, alpha=0.1, epochs=2, local_epochs=1))
    fed = p.federation
    bn = {k for k, m in _owners(p.trained).items() if isinstance(m, torch.nn.BatchNorm2d)}
    assert set(fed.kept_keys) == bn and not bn & set(fed.sent_keys)
    for r in (1, 2):
        train_round(p, r)
    means = [k for k in fed.kept_keys if k.endswith("running_mean")]
    for a in range(3):
        for b in range(a + 1, 3):
            assert all(not torch.allclose(fed.kept[a][k], fed.kept[b][k]) for k in means)
    sizes = np.array([len(s) for s in fed.shards], dtype=float)
    for k in means:  # the server's model, which validation and test score, averages them by samples
        expected = sum(w * fed.kept[c][k].double() for c, w in enumerate(sizes / sizes.sum())).float()
        assert_close(p.model.state_dict()[k], expected)


def test_frozen_stages_are_neither_trained_nor_sent():
    full = prepare(config(method="fedavg", clients=2, epochs=1))
    p = prepare(config(method="fedavg", clients=2, epochs=1, freeze_depth=2))
    before = {k: v.clone() for k, v in p.model.state_dict().items()}
    train_round(p, 1)
    frozen = [k for k in before if k.startswith(("backbone.stages.0.", "backbone.stages.1."))]
    assert frozen and not set(frozen) & set(p.federation.sent_keys)
    assert_close({k: p.model.state_dict()[k] for k in frozen}, {k: before[k] for k in frozen}, rtol=0, atol=0)
    assert p.federation.bytes_per_client < full.federation.bytes_per_client
    assert p.federation.round_bytes == [2 * p.federation.bytes_per_client]


def test_fedadam_steps_along_the_mean_client_update():
    avg = prepare(config(method="fedavg", clients=2, epochs=1))
    adam = prepare(config(method="fedadam", clients=2, epochs=1, server_lr=0.01))
    start = {k: v.clone() for k, v in adam.model.state_dict().items()}
    train_round(avg, 1)
    train_round(adam, 1)
    moved = 0
    for k in adam.federation.server.parameters:
        update = avg.trained.state_dict()[k] - start[k]
        step = adam.trained.state_dict()[k] - start[k]
        big = update.abs() > 1e-2  # Adam's first step is server_lr x g / (|g| + 1e-3): the sign of the update
        assert torch.equal(torch.sign(step[big]), torch.sign(update[big]))
        assert torch.all(step.abs() <= 0.01 + 1e-6)
        moved += int(big.sum())
    assert moved > 0


@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0, 100.0])
def test_shards_are_disjoint_cover_the_split_and_are_deterministic(alpha):
    labels = np.repeat(np.arange(10), 100)
    shards = client_shards(labels, 10, alpha, seed=7)
    assert len(shards) == 10 and all(len(s) >= 2 for s in shards)
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(len(labels)))  # disjoint and covering
    assert all(np.array_equal(a, b) for a, b in zip(shards, client_shards(labels, 10, alpha, seed=7)))
    assert not all(np.array_equal(a, b) for a, b in zip(shards, client_shards(labels, 10, alpha, seed=8)))


def test_shards_are_skewed_as_alpha_says():
    labels = np.repeat(np.arange(10), 100)

    def skew(alpha: float) -> float:  # mean total-variation distance of a client's class mix from the uniform one
        return float(np.mean([0.5 * np.abs(label_mix(labels, s, 10) - 0.1).sum()
                              for s in client_shards(labels, 10, alpha, seed=0)]))

    assert skew(0.1) > 0.6 > skew(1.0) > skew(100.0)
    assert skew(100.0) < 0.15 and skew(0.0) < 0.2  # alpha 0: IID (multinomial noise of 100 images: ~0.12)


def test_a_setting_the_data_cannot_hold_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"^clients=60: the training split has 100 images"):
        prepare(config(method="fedavg", clients=60))
    with pytest.raises(ConfigError, match=r"^client_fraction=0.0: must be in \(0, 1\]"):
        config(method="fedavg", client_fraction=0.0)


def test_searched_knobs_and_the_setting(tmp_path):
    from harness.study.spaces import parse_space

    parse_space({"local_epochs": {"int": [1, 3]}, "mu": {"loguniform": [0.001, 1.0]}, "freeze_depth": 1}, "space")
    for key in ("clients", "alpha", "client_fraction"):
        with pytest.raises(ConfigError, match=f"key '{key}' is set by the suite, not searched"):
            parse_space({key: 1}, "space")


def test_per_client_accuracy_weights_each_class_by_the_clients_mix():
    p = prepare(config(method="fedavg", clients=2, alpha=0.1, epochs=1))
    fed = p.federation
    fed.mixes = np.array([[1.0] + [0.0] * 9, [0.0, 0.5, 0.5] + [0.0] * 7])
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 0, 0, 0]), 10).float()  # class 0 right, 1 half, 2 none
    assert fed.client_metrics(logits, targets) == {"client_accuracy_mean": 0.625, "client_accuracy_worst": 0.25}


def _owners(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from harness.train.federation import entry_owners

    return dict(entry_owners(module))


def test_records_carry_the_federated_figures():
    summary = fit(config(method="fedprox", clients=3, alpha=0.5, epochs=2, evaluate_test=True)).summary
    for split in ("val", "test"):
        assert 0 <= summary[split]["client_accuracy_worst"] <= summary[split]["client_accuracy_mean"] <= 1
    cost = summary["cost"]
    assert cost["mb_total"] == pytest.approx(2 * cost["mb_per_round"]) and cost["mb_per_round"] > 0
    assert cost["rounds_to_90"] in (1, 2) and len(summary["history"]) == 2
    assert dataclasses.asdict(TrialConfig.from_dict(summary["config"]).method_args)["clients"] == 3


def test_the_setting_is_part_of_the_cell_and_where_clients_run_is_not():
    from harness.study.suite import apply_overrides, cells, load_suite, suite_from_dict

    suite = load_suite("federated-quick")
    random_init = [c for c in cells(suite) if c.weights == "none"]
    assert len(random_init) == 4 and len({c.cell_id for c in random_init}) == 4
    assert {(c.constants["clients"], c.constants["alpha"]) for c in random_init} == {(10, 0.1), (10, 0.0)}
    assert random_init[0].label == "digits:5-9 [10 clients, alpha 0.1, fraction 1] · fedavg · resnet8"
    ray_suite = apply_overrides(suite, client_parallelism="ray")
    assert [c.cell_id for c in cells(ray_suite) if c.weights == "none"] == [c.cell_id for c in random_init]
    with pytest.raises(ConfigError, match=r"federation: unknown key 'clinets'; choose from: clients, alpha"):
        suite_from_dict({"datasets": [{"name": "digits", "federation": {"clinets": 3}}], "methods": ["fedavg"],
                         "backbones": ["resnet8"]}, "s.yaml")
    with pytest.raises(ConfigError, match=r"^s.yaml: resources.workers_per_trial=2: federated methods \(fedavg\)"):
        suite_from_dict({"datasets": ["digits"], "methods": ["fedavg"], "backbones": ["resnet8"],
                         "resources": {"workers_per_trial": 2}}, "s.yaml")


def test_leaderboard_ranks_within_a_setting_and_shows_the_federated_columns(tmp_path):
    from harness.results import leaderboard as lb
    from harness.results.records import CellRecord, FinalRecord
    from harness.results.store import RunStore

    store = RunStore(tmp_path / "run")
    store.dir.mkdir(parents=True)
    for alpha, method, acc in ((0.1, "fedavg", 0.5), (0.1, "fedprox", 0.6), (0.0, "fedavg", 0.9), (0.0, "fedprox", 0.8)):
        fields = {"cell_id": f"{alpha}{method}", "dataset": "digits", "samples_per_class": 0, "method": method,
                  "backbone": "resnet8", "weights": "none"}
        setting = {"clients": 10, "alpha": alpha, "client_fraction": 1.0}
        finals = [FinalRecord(**fields, seed=s, status="ok", config=setting,
                              test={"accuracy": acc + 0.01 * s, "client_accuracy_mean": acc, "client_accuracy_worst": 0.2},
                              cost={"params_total": 1, "params_trainable": 1, "train_seconds": 1.0,
                                    "train_images_per_s": 1.0, "peak_memory_mb": 1.0, "mb_per_round": 3.0,
                                    "mb_total": 24.0, "rounds_to_90": 4 + s}) for s in (1, 2)]
        store.append([*finals, CellRecord(**fields, status="ok", trials=1, best_config={**setting, "lr": 0.1},
                                          space={"lr": {"loguniform": [0.01, 0.1]}})])
    df = lb.load([store.dir])
    assert list(df.setting) == ["10 clients, alpha 0.1, fraction 1"] * 2 + ["10 clients, iid, fraction 1"] * 2
    assert list(df["rank"]) == [1, 2, 1, 2] and list(df.method) == ["fedprox", "fedavg", "fedavg", "fedprox"]
    assert list(df.rounds_to_90) == [5.5] * 4 and list(df.mb_total) == [24.0] * 4
    assert list(df.test_client_accuracy_worst) == [0.2] * 4
    text = lb.to_text(df)
    assert "test_client_accuracy_mean" in text and "digits [10 clients, iid, fraction 1]" in text
