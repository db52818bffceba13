"""Transferability estimators: their maths on synthetic and hand-computed cases, the features they read (the linear
probe's, training split only), refusals without a classifier, `harness rank`, and the agreement table."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import optimize, stats

from harness.cli import main
from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.augment import batch_transform
from harness.data.bundle import SealedSplit
from harness.data.registry import DATASETS, load_dataset
from harness.models.checkpoints import SOURCE_FORMAT, write_file
from harness.ranking import ESTIMATORS, Observation, Refused, estimate
from harness.ranking.agreement import spearman_rho, weighted_tau
from harness.ranking.leep import leep
from harness.ranking.logme import logme
from harness.ranking.nce import nce
from harness.results import transferability as tr
from harness.results.records import EstimateRecord, from_json
from harness.study.estimates import rank
from harness.train.artifacts import pretrain, source_config
from harness.train.estimates import (
    extract_features,
    feature_config,
    feature_slices,
    finish_features,
    forward_slice,
    prepare_features,
    score_candidate,
    target_features,
)
from harness.train.inputs import eval_batch
from harness.train.loop import prepare

THREADS = torch.get_num_threads()


def synthetic(kind: str, n: int = 400, d: int = 16, classes: int = 4, seed: int = 0) -> Observation:
    """Features whose classes are cleanly separated, overlapping (noisy), or unrelated to the labels (random); the
    source probabilities come from a classifier that knows the class means."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % classes)
    means = rng.normal(0, 1, (classes, d))
    noise = {"separable": 0.2, "noisy": 1.2, "random": 0.0}[kind]
    features = means[labels] + rng.normal(0, noise, (n, d)) if kind != "random" else rng.normal(0, 1, (n, d))
    logits = features @ means.T * 2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return Observation(features, labels, probs / probs.sum(1, keepdims=True))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_estimators_order_separable_above_noisy_above_random(name):
    scores = {kind: estimate(name, synthetic(kind))[0] for kind in ("separable", "noisy", "random")}
    assert scores["separable"] > scores["noisy"] > scores["random"], scores


def _evidence(features: np.ndarray, target: np.ndarray, log_alpha: float, log_beta: float) -> float:
    """log N(t; 0, F F' / alpha + I / beta): the evidence of Bayesian linear regression, written directly."""
    cov = features @ features.T / math.exp(log_alpha) + np.eye(len(target)) / math.exp(log_beta)
    return stats.multivariate_normal(mean=np.zeros(len(target)), cov=cov).logpdf(target)


def test_logme_fixed_point_matches_a_direct_maximisation_of_the_evidence():
    rng = np.random.default_rng(1)
    labels = np.arange(40) % 3
    features = rng.normal(0, 1, (40, 6)) + np.eye(3, 6)[labels] * 1.5
    best = []
    for c in range(3):
        t = (labels == c).astype(float)
        fit = optimize.minimize(lambda p, t=t: -_evidence(features, t, *p), x0=[0.0, 0.0], method="Nelder-Mead",
                                options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
        best.append(-fit.fun)
    assert logme(features, labels) == pytest.approx(np.mean(best) / len(labels), rel=1e-6)


def test_leep_and_nce_match_hand_computations_on_a_3x3_joint():
    # soft source predictions of three images labelled 0, 1, 2: P(y=i, z) = theta[i, z] / 3, P(z) = column sum / 3
    theta = np.array([[.6, .3, .1], [.2, .5, .3], [.1, .2, .7]])
    by_hand = np.mean(np.log([.36 / .9 + .09 / 1.0 + .01 / 1.1,
                              .04 / .9 + .25 / 1.0 + .09 / 1.1,
                              .01 / .9 + .04 / 1.0 + .49 / 1.1]))
    assert leep(theta, np.array([0, 1, 2])) == pytest.approx(by_hand, rel=1e-12)
    # hard predictions: counts of (y, z) [[2, 1, 0], [0, 2, 1], [1, 0, 3]] over ten images; P(z) = 3/10, 3/10, 4/10
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    z = np.array([0, 0, 1, 1, 1, 2, 0, 2, 2, 2])
    hard = np.eye(3)[z]
    by_hand = (2 * math.log(2 / 3) + math.log(1 / 3) + 2 * math.log(2 / 3) + math.log(1 / 4) + math.log(1 / 3)
               + 3 * math.log(3 / 4)) / 10
    assert nce(hard, y) == pytest.approx(by_hand, rel=1e-12)
    assert leep(hard, y) == pytest.approx(by_hand, rel=1e-12)  # LEEP equals NCE on hard predictions


def _vigna_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Weighted tau without ties, written from Vigna (2015): pair weight 1/(r_i + 1) + 1/(r_j + 1) with r the
    rank by decreasing value, averaged over ranking by x and by y."""
    def one(rank_by: np.ndarray) -> float:
        r = np.empty(len(rank_by), int)
        r[np.argsort(-rank_by)] = np.arange(len(rank_by))
        num = den = 0.0
        for i in range(len(x)):
            for j in range(i + 1, len(x)):
                w = 1 / (r[i] + 1) + 1 / (r[j] + 1)
                num += w * np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
                den += w
        return num / den
    return (one(x) + one(y)) / 2


def test_weighted_kendall_tau_matches_scipy_where_definitions_agree():
    rng = np.random.default_rng(2)
    for n in (2, 5, 10):
        x, y = rng.normal(size=n), rng.normal(size=n)
        assert weighted_tau(x, y) == pytest.approx(stats.weightedtau(x, y).statistic, abs=1e-12)
        assert weighted_tau(x, y) == pytest.approx(_vigna_tau(x, y), abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    x = rng.normal(size=8)
    assert weighted_tau(x, x) == pytest.approx(1.0) and weighted_tau(x, -x) == pytest.approx(-1.0)
    assert math.isnan(weighted_tau([1.0], [2.0])) and math.isnan(weighted_tau([1, 2, 3], [5, 5, 5]))
    assert weighted_tau([1, 2, float("nan"), 4], [1, 2, 0, 3]) == pytest.approx(1.0)  # a refused candidate drops


def test_an_estimate_record_round_trips_with_a_refusal_and_a_non_finite_score():
    record = EstimateRecord(job="j", label="floor", dataset="digits", samples_per_class=0, backbone="resnet8",
                            weights="none", status="ok", scores={"logme": 0.5, "gbc": float("nan")},
                            refused={"leep": "no classifier"})
    line = json.loads(json.dumps(record.to_json()))
    assert line["kind"] == "estimate" and line["scores"]["gbc"] is None
    assert from_json(line) == EstimateRecord(**{**record.__dict__, "scores": {"logme": 0.5, "gbc": None}})


def test_an_estimator_needing_a_classifier_refuses_with_one_line():
    obs = Observation(np.zeros((4, 2)), np.array([0, 1, 0, 1]), None, "weights 'none' have no classifier")
    for name in ("leep", "nce"):
        with pytest.raises(Refused, match=f"^{name} needs the source network's own classifier: weights 'none'"):
            estimate(name, obs)
    assert estimate("logme", obs)[1] >= 0


@pytest.fixture(scope="module")
def small_source(tmp_path_factory):
    """resnet8 trained for one epoch on 20 images per class of digits 0-4: a source file with its classifier."""
    path, _ = pretrain(source_config("digits:0-4", "resnet8", epochs=1, augment="none", samples_per_class=20),
                       out_dir=tmp_path_factory.mktemp("sources"))
    return path


def test_features_are_those_the_linear_probe_caches(small_source):
    config = feature_config("digits:5-9", "resnet8", f"checkpoint:{small_source}", samples_per_class=10)
    tf = target_features(config, precision="fp32")
    cached = prepare(TrialConfig.from_dict({**config.to_dict(), "epochs": 1})).inputs["train"]
    assert cached.images.shape == (50, 64) and tf.observation.features.shape == (50, 64)
    assert np.allclose(tf.observation.features, cached.images.numpy(), atol=1e-6)
    assert np.array_equal(tf.observation.labels, cached.labels.numpy())
    probs = tf.observation.source_probs
    assert probs.shape == (50, 5) and np.allclose(probs.sum(1), 1)  # the source classifier over digits 0-4


def test_bf16_features_round_the_probes_features_and_keep_the_ranking(small_source):
    """The fast pass (`--precision bf16`, what `auto` picks on a CPU with native bf16) differs from the float32
    features by bfloat16 rounding only, and every estimator orders the candidates as with float32."""
    target = dict(samples_per_class=10)
    config = feature_config("digits:5-9", "resnet8", f"checkpoint:{small_source}", **target)
    exact, fast = (target_features(config, precision=p) for p in ("fp32", "bf16"))
    assert (exact.precision, fast.precision) == ("fp32", "bf16")
    f32, f16 = exact.observation.features, fast.observation.features
    assert 0 < np.linalg.norm(f16 - f32) / np.linalg.norm(f32) < 2e-2
    assert np.allclose(fast.observation.source_probs, exact.observation.source_probs, atol=2e-2)
    candidates = (f"checkpoint:{small_source}", "none")
    order = {}
    for p in ("fp32", "bf16"):
        scores = [score_candidate(feature_config("digits:5-9", "resnet8", w, **target), ["logme", "hscore", "gbc"], p)
                  for w in candidates]
        assert {s.precision for s in scores} == {p}
        order[p] = {name: scores[0].scores[name] > scores[1].scores[name] for name in scores[0].scores}
    assert order["bf16"] == order["fp32"]


def test_batched_channels_last_features_equal_one_plain_forward(small_source):
    """The fast feature pass (CPU batches in channels-last) computes what one contiguous forward of the whole
    split through the frozen network does."""
    config = feature_config("digits:5-9", "resnet8", f"checkpoint:{small_source}", samples_per_class=10)
    p = prepare(TrialConfig.from_dict({**config.to_dict(), "epochs": 1}))
    transform = batch_transform(config, p.prep, p.bundle.flip, channels_last=False)
    with torch.no_grad():
        x = transform(p.bundle.train.images, train=False).contiguous()
        plain = p.model.backbone.eval()(x)
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(p.inputs["train"].images, plain, atol=1e-5, rtol=1e-5)


def test_slices_cut_on_batch_boundaries_and_give_the_one_pass_features(small_source):
    """The threads' work items: runs of whole evaluation batches covering the split once, whose features, put
    back together, are the one-pass features bit for bit (each image in its one-pass batch); the network stays in
    evaluation mode so threads sharing it never switch it."""
    fp = prepare_features(feature_config("digits", "resnet8", f"checkpoint:{small_source}", samples_per_class=37),
                          torch.device("cpu"), "fp32")
    n, size = len(fp.bundle.train), eval_batch(torch.device("cpu"))
    assert n == 370 and size == 32
    parts = feature_slices(fp, 3)
    assert [(p.start, p.stop) for p in parts] == [(0, 128), (128, 256), (256, 370)]
    assert feature_slices(fp, 1) == [slice(0, 370)] and len(feature_slices(fp, 50)) == 12
    whole, _ = forward_slice(fp, slice(0, n))
    pieces = torch.cat([forward_slice(fp, p)[0] for p in parts])
    assert not fp.backbone.training and torch.equal(whole, pieces)
    joined = finish_features(fp, pieces, 0.0).observation
    assert np.array_equal(joined.features, extract_features(fp).observation.features)


def test_a_source_without_its_classifier_or_a_random_network_is_refused_by_leep_and_nce(small_source, tmp_path):
    blob = torch.load(small_source, weights_only=True)
    assert blob["classifier"]["weight"].shape == (5, 64)
    old = tmp_path / "old.pt"  # a source file written before sources kept their head
    write_file(old, SOURCE_FORMAT, blob["backbone"], blob["state_dict"], blob["meta"])
    for weights, why in ((f"checkpoint:{old}", "keep no classifier"), ("none", "randomly initialised")):
        scores = score_candidate(feature_config("digits:5-9", "resnet8", weights, samples_per_class=10))
        assert set(scores.refused) == {"leep", "nce"} and set(scores.scores) == {"logme", "hscore", "gbc"}
        assert all(why in line and "\n" not in line for line in scores.refused.values())


@pytest.fixture(scope="module")
def sealed_target():
    """digits 5-9 whose test split is sealed even for a final run: reading it anywhere raises."""
    name = "digits_test_sealed"
    if name not in DATASETS:
        @DATASETS.register(name, "digits 5-9 with a test split nobody may read")
        def _factory(split_seed: int = 0):
            b = load_dataset("digits:5-9", split_seed=split_seed)
            return type(b)(name, b.train, b.val, SealedSplit(b.test), b.class_names)
    return name


def test_rank_scores_the_training_split_and_never_opens_test(small_source, sealed_target, tmp_path, capsys):
    out = tmp_path / "rank.csv"
    assert main(["rank", "--dataset", sealed_target, "--samples-per-class", "20", "--weights",
                 f"checkpoint:{small_source}", "resnet8=none", "--out", str(out)]) == 0
    printed, err = capsys.readouterr()
    n_train = 5 * 20
    assert f"{sealed_target}: {n_train} training images (the test split is not read)" in printed
    for name in ESTIMATORS:
        assert name in printed
    assert "resnet8=none: leep needs the source network's own classifier" in err
    table = pd.read_csv(out)
    assert len(table) == 2 * len(ESTIMATORS) and set(table.images) == {n_train}
    assert table[table.refused.notna()].candidate.unique().tolist() == ["resnet8=none"]
    ranks = table.dropna(subset=["score"]).groupby("estimator")["rank"].apply(sorted).to_dict()
    assert ranks == {name: [1] if name in ("leep", "nce") else [1, 2] for name in ESTIMATORS}
    assert main(["rank", "--dataset", "digits:5-9", "--samples-per-class", "5", "--backbone", "resnet8",
                 "--weights", "none", "--estimators", "logme,gbc", "--out", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["estimator"], r["images"]) for r in rows] == [("logme", 25), ("gbc", 25)]


def test_candidates_scored_side_by_side_score_as_one_by_one(small_source):
    """`rank` runs CPU candidates' feature passes in threads: the scores are those of one after another, each
    random candidate initialised as the linear probe's (both `none` entries alike, whichever thread ran them)."""
    entries = [f"checkpoint:{small_source}", "resnet8=none", "none"]
    kwargs = dict(backbone="resnet8", samples_per_class=10, estimators=["logme", "hscore", "gbc"], precision="fp32")
    alone = rank("digits:5-9", entries, workers=1, **kwargs)
    together = rank("digits:5-9", entries, workers=3, **kwargs)
    assert [r.label for r in together] == entries
    for a, b in zip(alone, together, strict=True):
        assert a.scores.keys() == b.scores.keys() == {"logme", "hscore", "gbc"}
        assert all(math.isclose(a.scores[k], b.scores[k], rel_tol=1e-5, abs_tol=1e-6) for k in a.scores)
    assert together[1].scores == together[2].scores and together[0].scores != together[1].scores
    assert torch.get_num_threads() == THREADS
    with pytest.raises(ConfigError, match="--workers -1: give 0"):
        rank("digits:5-9", entries, workers=-1, **kwargs)


@pytest.mark.parametrize("argv, message", [
    (["--weights", "none"], "--weights none: no backbone; write BACKBONE=none"),
    (["--weights", "source:digits0-4"], "source:KEY names a network of a suite"),
    (["--weights", "resnet8=none", "resnet8=none"], "--weights: resnet8=none given twice"),
    (["--weights", "resnet8=none", "--estimators", "logmee"], "unknown estimator 'logmee'; choose from: logme"),
    (["--weights", "resnet8=none", "--out", "x.txt"], "--out=x.txt: cannot tell the format"),
])
def test_rank_refuses_bad_input_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["rank", "--dataset", "digits:5-9", "--samples-per-class", "2", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _record(weights: str, label: str, **scores) -> EstimateRecord:
    return EstimateRecord(job=label, label=label, dataset="digits:5-9", samples_per_class=10, backbone="resnet8",
                          weights=weights, status="ok", scores=scores,
                          refused={"leep": "no classifier"} if "leep" not in scores else {})


def test_agreement_correlates_each_estimator_with_the_test_scores_per_method():
    weights = ["checkpoint:/a/src1.pt", "checkpoint:/a/src2.pt", "checkpoint:/a/src3.pt", "none"]
    real = {"finetune": [0.9, 0.8, 0.6, 0.5], "linear_probe": [0.7, 0.75, 0.4, 0.2], "scratch": [0.5]}
    rows = [{"dataset": "digits:5-9", "samples_per_class": 10, "method": m, "backbone": "resnet8",
             "weights": "none" if m == "scratch" else w, "test_score": s, "metric": "accuracy"}
            for m, scores in real.items() for w, s in zip(weights, scores)]
    estimates = [_record("checkpoint:/elsewhere/src1.pt", "s1", logme=3.0, leep=-1.0),  # joined by file name
                 _record("checkpoint:/a/src2.pt", "s2", logme=2.0, leep=-2.0),
                 _record("checkpoint:/a/src3.pt", "s3", logme=1.0, leep=-3.0),
                 _record("none", "floor", logme=0.0)]
    table = tr.agreement(pd.DataFrame(rows), estimates)
    assert list(table.method.unique()) == ["finetune", "linear_probe"]  # scratch has a single candidate
    got = table.set_index(["method", "estimator"])
    assert got.loc[("finetune", "logme")].tolist()[-3:] == [4, pytest.approx(1.0), pytest.approx(1.0)]
    assert got.loc[("finetune", "leep"), "candidates"] == 3  # the floor has no classifier
    lp = [0.7, 0.75, 0.4, 0.2]
    assert got.loc[("linear_probe", "logme"), "weighted_tau"] == pytest.approx(
        stats.weightedtau([3.0, 2.0, 1.0, 0.0], lp).statistic)
    assert got.loc[("linear_probe", "logme"), "spearman_rho"] == pytest.approx(0.8)
    html = tr.report_section(pd.DataFrame(rows), estimates, lambda fig: "PNG")
    assert "weighted_tau" in html and "base64,PNG" in html
    assert "Transferability" in tr.section(pd.DataFrame(rows), estimates, "md")
    assert tr.section(pd.DataFrame(rows), [], "md") == ""
