"""label_mapping (label-based transfer): the source network and its classifier stay frozen, a map from its class
probabilities to the target classes starts from LEEP's empirical P(y|z) and is scored untrained too; weights
without a classifier are refused; ImageNet weights (1000 source classes) work from a locally written file."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.models import get_model, get_model_weights

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.bundle import Split
from harness.methods.label_mapping import initialise
from harness.methods.training.label_mapping import LabelMappingHead
from harness.methods.objective import MethodContext
from harness.models.staged import Classifier, StagedBackbone
from harness.models.weights import weights_file
from harness.ranking.leep import (
    empirical_conditional,
    expected_empirical_predictor,
    leep,
)
from harness.train.checks import run_problems
from harness.train.loop import fit, prepare


def config(weights: str, **kw) -> TrialConfig:
    base = {"dataset": "digits", "backbone": "resnet8", "method": "label_mapping", "weights": weights,
            "samples_per_class": 20, "epochs": 3, "lr": 0.05, "optimizer": "adamw", "batch_size": 32,
            "dropout": 0.0}
    return TrialConfig.from_dict({**base, **kw})


def test_initial_map_is_the_empirical_conditional_of_a_hand_computed_joint():
    # three images, two source classes, two target classes; log-probabilities as features through an identity
    # classifier give back exactly these source probabilities
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1])
    identity = torch.nn.Linear(2, 2)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(2))
        identity.bias.zero_()
    head = LabelMappingHead(identity, num_classes=2)
    model = Classifier(StagedBackbone([torch.nn.Identity()], 2), head=head)
    ctx = MethodContext(config=None, model=model, trained=head, bundle=SimpleNamespace(num_classes=2), task=None,
                        prep=None, transform=None, device=torch.device("cpu"), amp=None, criterion=None, mix=None,
                        predict=lambda m, split, t: m(split.images))
    initialise(ctx, Split(probs.log(), labels))
    # joint P(y, z) = mean_i theta_z(x_i)[y_i = y]: y=0 -> (1.4, 0.6) / 3, y=1 -> (0.1, 0.9) / 3
    expected = torch.tensor([[1.4 / 1.5, 0.6 / 1.5], [0.1 / 1.5, 0.9 / 1.5]])
    assert torch.allclose(head.map.conditional(), expected, atol=1e-6)
    # the untrained network is the expected empirical predictor: sum_z P(y|z) theta_z(x)
    assert torch.allclose(model(probs.log()).exp(), probs @ expected.T, atol=1e-6)


def test_source_stays_frozen_untrained_score_is_leeps_predictor_and_transfer_beats_chance(source_checkpoint):
    c = config(f"checkpoint:{source_checkpoint}", evaluate_test=True)
    p = prepare(c)
    assert p.cached and [n for n, q in p.model.named_parameters() if q.requires_grad] == ["head.map.logits"]
    # the map starts from LEEP's P(y|z) on the training split's source probabilities
    train, val = p.inputs["train"], p.inputs["val"]
    with torch.no_grad():
        probs = {s: p.model.head.source_probs(x.images).double().numpy() for s, x in (("train", train), ("val", val))}
    conditional = empirical_conditional(probs["train"], train.labels.numpy(), 10)
    assert np.allclose(p.model.head.map.conditional().detach().numpy(), conditional, atol=1e-5)
    # scored untrained: accuracy of LEEP's expected empirical predictor, and its log-likelihood on the training
    # split is the LEEP score of `harness rank`
    eep_val = expected_empirical_predictor(probs["val"], conditional)
    assert p.untrained["val"]["untrained_accuracy"] == pytest.approx(
        float((eep_val.argmax(1) == val.labels.numpy()).mean()))
    with torch.no_grad():
        log_likelihood = p.model.head(train.images).gather(1, train.labels[:, None]).mean().item()
    assert log_likelihood == pytest.approx(leep(probs["train"], train.labels.numpy()), abs=1e-4)

    result = fit(c)
    source = torch.load(source_checkpoint, weights_only=True)
    model = result.model
    assert all(torch.equal(v, source["state_dict"][k]) for k, v in model.backbone.state_dict().items())
    assert all(torch.equal(v, source["classifier"][k]) for k, v in model.head.classifier.state_dict().items())
    assert not np.allclose(model.head.map.conditional().detach().numpy(), conditional, atol=1e-4)  # the map trained
    s = result.summary
    assert s["model"]["source_classes"] == 5 and s["cost"]["params_trainable"] == 10 * 5
    assert s["val"]["untrained_accuracy"] == p.untrained["val"]["untrained_accuracy"]
    assert s["test"]["untrained_accuracy"] > 0.3 and s["test"]["accuracy"] > 0.35  # ten digits: chance is 0.1


def test_weights_without_a_classifier_are_refused_in_one_line(source_checkpoint, tmp_path):
    blob = torch.load(source_checkpoint, weights_only=True)
    del blob["classifier"]
    headless = tmp_path / "headless.pt"
    torch.save(blob, headless)
    c = config(f"checkpoint:{headless}")
    message = (f"weights='checkpoint:{headless}': method 'label_mapping' needs the source network's own classifier; "
               f"weights 'checkpoint:{headless}' keep no classifier")
    with pytest.raises(ConfigError) as e:
        fit(c)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert [str(x) for x in run_problems(c)] == [str(e.value)]  # refused before Ray starts, too
    (none,) = run_problems(config("none"))
    assert str(none).startswith("weights='none': method 'label_mapping' needs pretrained weights")


def test_imagenet_weights_map_1000_source_classes(tmp_path, monkeypatch):
    """A torchvision ResNet-18 built here (random weights, no download) written where the ImageNet file belongs."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        enum = get_model_weights("resnet18").DEFAULT
        path = weights_file(enum)
        path.parent.mkdir(parents=True)
        torch.manual_seed(0)
        state = get_model("resnet18", weights=None).state_dict()
        torch.save(state, path)
        result = fit(config("imagenet", backbone="resnet18", image_size=32, samples_per_class=3, val_per_class=3,
                            epochs=1))
    finally:
        torch.hub.set_dir(os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub"))
    head = result.model.head
    assert result.summary["model"]["source_classes"] == 1000 and head.map.logits.shape == (10, 1000)
    assert torch.equal(head.classifier.weight, state["fc.weight"])
    assert torch.equal(head.classifier.bias, state["fc.bias"])
    assert result.summary["status"] == "ok" and "untrained_accuracy" in result.summary["val"]
