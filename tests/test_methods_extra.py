"""The methods of issue 6, each by its defining property, on digits with the resnet8 source pretrained on
digits 0-4: multibranch, distill, feature_transfer, l2sp, augmentation policies, batch mixing and L1."""

from pathlib import Path

import pytest
import torch

from harness.data.augment import RandAugmentEach, batch_mix
from harness.models.staged import cifar_resnet
from harness.models.weights import load_weights
from harness.data.registry import load_dataset
from harness.methods.distill import load_teacher, preparation, teacher_config, teacher_path, write_teacher
from harness.train.checks import check_names
from harness.train.loop import build_model, fit, seed_everything
from harness.core.errors import ConfigError
from harness.methods.training.feature_transfer import target_network
from harness.methods.l2sp import weight_distance
from harness.train.artifacts import run_preparation
from harness.methods import METHODS
from harness.methods.multibranch import rotate
from harness.methods.training.multibranch import MultiBranchClassifier
from harness.core.config import TrialConfig


def config(source, **kw) -> TrialConfig:
    base = {"dataset": "digits", "backbone": "resnet8", "epochs": 2, "lr": 0.05, "batch_size": 64,
            "weights": f"checkpoint:{source}"}
    return TrialConfig.from_dict({**base, **kw})


def source_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def initial_model(c: TrialConfig):
    """The network fit() starts from (same seed, same construction order)."""
    seed_everything(c.seed)
    weights = load_weights(c.weights, c.backbone)
    return build_model(c, load_dataset(c.dataset, split_seed=c.split_seed), weights)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- configuration

def test_new_fields_at_their_defaults_keep_existing_config_hashes():
    assert TrialConfig().identity() == "517fa4e81bb5"  # the hashes before issue 6
    partial = {"method": "partial", "freeze_depth": 2, "backbone": "resnet8", "lr": 0.01}
    assert TrialConfig.from_dict(partial).identity() == "068c35e640e6"
    assert TrialConfig(l1=1e-5).identity() != TrialConfig().identity()


@pytest.mark.parametrize("values,message", [
    ({"augment": "autoaugment"}, "augment='autoaugment': choose from: none, basic, randaugment"),
    ({"l1": -1}, "l1=-1.0: must be >= 0"),
    ({"mixup": -0.2}, "mixup=-0.2: must be >= 0"),
    ({"kd_alpha": 1.5}, "kd_alpha=1.5: must be in [0, 1]"),
    ({"kd_temperature": 0}, "kd_temperature=0.0: must be > 0"),
    ({"teacher_weights": "imagenet1k"}, "teacher_weights='imagenet1k': choose from: none, imagenet, checkpoint:PATH"),
    ({"feature_layer": 0}, "feature_layer=0: must be a stage count >= 1, or negative to count from the last stage "
                           "(-1 = all but the last)"),
    ({"target_depth": -1}, "target_depth=-1: must be in [0, 5] (0 = its fully connected classifier alone)"),
    ({"method": "finetune", "kd_alpha": 1.0}, "kd_alpha=1.0: not used by method 'finetune' (used by: distill)"),
    ({"method": "distill", "aux_weight": 1.0}, "aux_weight=1.0: not used by method 'distill' (used by: multibranch)"),
    ({"method": "l2sp"}, "weights='none': method 'l2sp' needs pretrained weights; give weights=imagenet or "
                         "checkpoint:PATH"),
    ({"method": "distill", "teacher": "resnet200"}, "teacher='resnet200': give a backbone or checkpoint:PATH; "
                                                    "unknown backbone 'resnet200'"),
    ({"method": "distill", "teacher": "checkpoint:/no/such.pt"}, "teacher='checkpoint:/no/such.pt': no such file"),
    ({"method": "multibranch", "aux_tasks": "digit:0-4"}, "aux_tasks='digit:0-4': task 'digit:0-4': give rotation "
                                                          "or a dataset spec; unknown dataset 'digit'"),
    ({"method": "multibranch", "aux_tasks": "rotation+"}, "aux_tasks='rotation+': an empty task; give dataset specs "
                                                          "or rotation, joined by '+'"),
    ({"method": "multibranch", "aux_tasks": "rotation+rotation"}, "aux_tasks='rotation+rotation': a task is named "
                                                                  "twice"),
    ({"method": "multibranch", "aux_tasks": "rotation+digits:0-1+digits:2-3+digits:4-5+shapes"},
     "aux_tasks='rotation+digits:0-1+digits:2-3+digits:4-5+shapes': 5 tasks; at most 4"),
    ({"method": "multibranch", "aux_tasks": "rotation+digits:0-4", "aux_weight_3": 0.2},
     "aux_weight_3=0.2: aux_tasks='rotation+digits:0-4' names 2 task(s); weight only the tasks it names "
     "(aux_weight, aux_weight_2)"),
    ({"method": "label_mapping", "weights": "none"}, "weights='none': method 'label_mapping' needs pretrained weights"),
    ({"method": "label_mapping", "weights": "imagenet", "dropout": 0.1}, "dropout=0.1: method 'label_mapping' has no "
                                                                        "layer for dropout"),
])
def test_bad_values_give_one_line_config_errors(values, message):
    with pytest.raises(ConfigError) as e:
        check_names(TrialConfig.from_dict({"backbone": "resnet8", **values}))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_feature_layer_beyond_the_backbone_is_refused():
    with pytest.raises(ConfigError, match=r"^feature_layer=5: the source network has 4 stages; allowed 1-4, "
                                          r"or -1 to -3 counted from the end$"):
        METHODS.get("feature_transfer").check(TrialConfig.from_dict({"method": "feature_transfer", "feature_layer": 5,
                                                                     "backbone": "resnet8"}), 4)


# ---------------------------------------------------------------- multibranch

def test_multibranch_trunk_gets_gradients_from_every_task():
    torch.manual_seed(0)
    model = MultiBranchClassifier(cifar_resnet(8), num_classes=10, aux_classes=[5, 4], dropout=0.0,
                                  train_aux=[True, True])
    x, xa, xb = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32), torch.randn(6, 3, 32, 32)
    targets = [torch.randint(0, 10, (8,)), torch.randint(0, 5, (8,)), torch.randint(0, 4, (6,))]
    heads = [model.head, *model.aux_heads]
    grads = []
    for which in range(3):
        model.zero_grad(set_to_none=True)
        main, aux = model(x, xa, xb)
        torch.nn.functional.cross_entropy([main, *aux][which], targets[which]).backward()
        assert all(p.grad is not None for p in heads[which].parameters())
        assert all(p.grad is None for i, h in enumerate(heads) if i != which for p in h.parameters())
        grads.append(torch.cat([p.grad.flatten() for p in model.backbone.parameters()]))
        assert grads[-1].abs().sum() > 0
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert torch.nn.functional.cosine_similarity(grads[a], grads[b], dim=0) < 0.99


def test_rotation_turns_each_image_by_its_own_quarter_turns():
    x = torch.arange(4 * 2 * 3 * 3, dtype=torch.float).view(4, 2, 3, 3)
    turns = torch.tensor([0, 1, 2, 3])
    out = rotate(x, turns)
    for i in range(4):
        assert torch.equal(out[i], torch.rot90(x[i], i, dims=(1, 2)))


def test_multibranch_zero_weights_are_finetuning_and_a_zero_weight_head_stays_unchanged(source_checkpoint):
    aux = {"method": "multibranch", "aux_tasks": "digits:0-4+rotation"}
    finetune = fit(config(source_checkpoint))
    off = fit(config(source_checkpoint, aux_weight=0.0, aux_weight_2=0.0, **aux))
    on = fit(config(source_checkpoint, aux_weight=0.5, aux_weight_2=0.0, **aux))
    start = initial_model(config(source_checkpoint, aux_weight=0.0, aux_weight_2=0.0, **aux))

    # every weight 0 is fine-tuning: the same network, weight for weight, and the same scores
    assert same_state(off.model.backbone, finetune.model.backbone) and same_state(off.model.head, finetune.model.head)
    assert {k: v for k, v in off.summary["val"].items() if not k.startswith("aux")} == finetune.summary["val"]
    assert all(same_state(a, b) for a, b in zip(off.model.aux_heads, start.aux_heads))  # never trained
    # the weighted branch's head, the target head and the shared trunk move; the branch of weight 0 does not
    assert not same_state(on.model.head, start.head) and not same_state(on.model.aux_heads[0], start.aux_heads[0])
    assert same_state(on.model.aux_heads[1], start.aux_heads[1])
    assert not same_state(on.model.backbone, finetune.model.backbone)
    assert on.summary["model"]["aux_branches"] == [
        {"branch": 1, "task": "digits:0-4", "weight": 0.5, "classes": 5,
         "train_loss": on.summary["model"]["aux_branches"][0]["train_loss"]},
        {"branch": 2, "task": "rotation", "weight": 0.0, "classes": 4, "train_loss": None}]
    assert on.summary["val"]["aux1_accuracy"] > 0.6 and on.summary["val"]["aux2_accuracy"] is None
    assert on.summary["val"]["accuracy"] > 0.8  # only the main task is the run's score (10 classes)


def test_multibranch_trains_every_weighted_branch(source_checkpoint):
    c = config(source_checkpoint, method="multibranch", aux_tasks="rotation+digits:0-4", aux_weight=1.0,
               aux_weight_2=0.3)
    result, start = fit(c), initial_model(c)
    assert result.summary["status"] == "ok"
    assert not any(same_state(a, b) for a, b in zip(result.model.aux_heads, start.aux_heads))
    branches = result.summary["model"]["aux_branches"]
    assert [(b["task"], b["weight"], b["classes"]) for b in branches] == [("rotation", 1.0, 4), ("digits:0-4", 0.3, 5)]
    assert all(b["train_loss"] > 0 for b in branches)
    val = result.summary["val"]
    assert val["aux1_accuracy"] > 0.4 and val["aux2_accuracy"] > 0.6  # chance: 0.25 and 0.2


# ---------------------------------------------------------------- distill

@pytest.fixture(scope="module")
def teacher_file(source_checkpoint, tmp_path_factory):
    """A resnet14 teacher fine-tuned on digits from random initialisation, in a private teachers folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_TEACHERS", str(tmp_path_factory.mktemp("teachers")))
        c = config(source_checkpoint, method="distill", teacher="resnet14", teacher_epochs=4)
        path, reused = run_preparation(preparation(c))
        assert not reused
        assert path == teacher_path(teacher_config(c)) and path.is_file()
        yield c, path


def test_distill_reuses_the_teacher_and_records_teacher_and_student(teacher_file):
    c, path = teacher_file
    before = path.stat().st_mtime_ns
    summary = fit(c.replace(kd_alpha=0.5, epochs=3)).summary
    assert path.stat().st_mtime_ns == before  # the cached teacher, not a new one
    teacher, cost = summary["model"]["teacher"], summary["cost"]
    assert teacher["backbone"] == "resnet14" and teacher["file"] == str(path) and teacher["val_accuracy"] > 0.8
    assert cost["params_total"] < cost["teacher_params_total"] == teacher["params_total"]  # a smaller student
    assert cost["student_inference_images_per_s"] > 0 and cost["teacher_inference_images_per_s"] > 0
    assert summary["model"]["source_network"] == "resnet14" and summary["model"]["target_network"] == "resnet8"
    assert summary["val"]["accuracy"] > 0.8


def test_distill_with_alpha_one_student_learns_the_teachers_predictions(teacher_file, tmp_path):
    """A teacher whose answers are shifted by one class: with alpha = 1 (no labels) the student agrees with
    the teacher, so it is wrong about the labels; its agreement is what it learnt."""
    c, path = teacher_file
    bundle = load_dataset("digits")
    teacher, prep, meta = load_teacher(path, bundle.num_classes)
    with torch.no_grad():
        for p in teacher.head[-1].parameters():
            p.copy_(p.roll(1, dims=0))
    shifted = tmp_path / "shifted.pt"
    write_teacher(teacher, meta["backbone"], prep, shifted)
    summary = fit(c.replace(teacher=f"checkpoint:{shifted}", kd_alpha=1.0, kd_temperature=2.0, lr=0.1,
                            epochs=4)).summary
    facts = summary["model"]["teacher"]
    assert facts["val_accuracy"] < 0.2 and facts["val_agreement"] > 0.7, facts
    assert summary["val"]["accuracy"] < 0.2


# ---------------------------------------------------------------- feature_transfer

def test_feature_transfer_trains_a_target_network_on_frozen_cached_features(source_checkpoint):
    result = fit(config(source_checkpoint, method="feature_transfer", feature_layer=-1, target_depth=2,
                        target_width=32, target_fc=128, lr=0.02, epochs=3))
    model, summary = result.model, result.summary
    assert summary["model"]["cached_features"] and summary["model"]["feature_shape"] == [32, 16, 16]
    assert model.backbone.num_stages == 3 == summary["model"]["feature_layer"]
    before = source_state(source_checkpoint)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after)  # weights and BatchNorm statistics
    assert summary["cost"]["params_trainable"] == sum(p.numel() for p in model.head.parameters())
    assert summary["model"]["target_network"] == "alexnet_style" and summary["model"]["source_network"] == "resnet8"
    assert summary["val"]["accuracy"] > 0.8


def test_feature_transfer_refuses_a_backbone_other_than_its_source_network(source_checkpoint):
    """The cell's backbone is the network the features come from: a checkpoint of another network is refused."""
    with pytest.raises(ConfigError, match="it holds a 'resnet8' network, not backbone 'alexnet'"):
        fit(config(source_checkpoint, backbone="alexnet", method="feature_transfer", feature_layer=2, epochs=1))


def test_target_network_follows_alexnets_layer_pattern_adapted_to_the_map():
    net = target_network((256, 13, 13), depth=5, width=64, num_classes=3, dropout=0.5, fc=4096)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256]  # AlexNet's at width 64
    assert [c.kernel_size[0] for c in convs[:2]] == [11, 5]  # AlexNet's large kernels where the map fits them
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 2  # 13 -> 6 -> 2: too small for a third
    fcs = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [f.out_features for f in fcs] == [4096, 4096, 3]
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 2
    small = target_network((32, 4, 4), depth=3, width=8, num_classes=3, dropout=0.0, fc=16)
    assert small(torch.randn(2, 32, 4, 4)).shape == (2, 3)
    assert [c.kernel_size[0] for c in small.modules() if isinstance(c, torch.nn.Conv2d)] == [3, 1, 1]
    flat = target_network((64,), depth=2, width=8, num_classes=3, dropout=0.0, fc=16)
    assert flat(torch.randn(2, 64)).shape == (2, 3) and not any(isinstance(m, torch.nn.Conv2d) for m in flat.modules())


# ---------------------------------------------------------------- l2sp

def test_l2sp_ends_closer_to_the_pretrained_weights_than_finetune(source_checkpoint):
    pretrained = source_state(source_checkpoint)
    plain = fit(config(source_checkpoint, method="finetune", lr=0.1))
    l2sp = fit(config(source_checkpoint, method="l2sp", lr=0.1, l2sp_alpha=0.1))
    d_plain, d_l2sp = weight_distance(plain.model, pretrained), weight_distance(l2sp.model, pretrained)
    assert d_l2sp < 0.8 * d_plain, (d_l2sp, d_plain)
    assert l2sp.summary["model"]["distance_to_pretrained"] == pytest.approx(d_l2sp, rel=1e-4)
    assert l2sp.summary["val"]["accuracy"] > 0.8


# ---------------------------------------------------------------- augmentation, mixing, L1

def test_randaugment_draws_an_operation_per_image():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8)
    out = RandAugmentEach()(image.expand(16, -1, -1, -1))
    assert out.dtype == torch.uint8 and out.shape == (16, 1, 32, 32)
    assert len({o.numpy().tobytes() for o in out}) > 4


def test_mixup_and_cutmix_give_soft_labels():
    mix = batch_mix(TrialConfig(mixup=0.4, cutmix=1.0), num_classes=10)
    x, y = mix(torch.randn(8, 3, 32, 32), torch.arange(8))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8, 10)
    assert torch.allclose(y.sum(1), torch.ones(8)) and (y.max(1).values < 1).all()
    assert batch_mix(TrialConfig(), num_classes=10) is None


def test_randaugment_with_mixup_and_cutmix_trains(source_checkpoint):
    summary = fit(config(source_checkpoint, augment="randaugment", mixup=0.2, cutmix=1.0, epochs=2)).summary
    assert summary["status"] == "ok" and not summary["model"]["cached_features"]
    assert summary["val"]["accuracy"] > 0.5


def test_l1_makes_the_trained_weights_sparse(source_checkpoint):
    def head(**kw):
        result = fit(config(source_checkpoint, method="linear_probe", lr=0.5, epochs=3, **kw))
        w = result.model.head[-1].weight.detach()
        return w.abs().sum().item(), (w.abs() < 1e-2).float().mean().item(), result.summary["val"]["accuracy"]

    (plain, plain_zeros, _), (l1, l1_zeros, accuracy) = head(), head(l1=1e-2)
    assert l1 < 0.5 * plain and l1_zeros > 0.3 > plain_zeros, (plain, l1, plain_zeros, l1_zeros)
    assert accuracy > 0.8
