"""Detection: VOC and COCO average precision on hand-made boxes, generated scenes, VOC and COCO files read by
torchvision, detectors and their weights (local files only), and the loop training a detector."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import get_model, get_model_weights

from harness.core.config import TrialConfig
from harness.core.errors import ConfigError
from harness.data.boxes import target
from harness.data.registry import load_dataset
from harness.data.shapes import draw_shape, generate_scenes
from harness.models.backbones import BACKBONES
from harness.models.detectors import DETECTORS, build_detector
from harness.models.weights import load_weights, weights_file
from harness.tasks import TASKS
from harness.tasks.detection import detection_metrics
from harness.tasks.voc_ap import voc_ap
from harness.train.checks import check_names
from harness.train.loop import fit
from tests.detection_fixtures import write_coco, write_voc

A, B, C = [0, 0, 10, 10], [20, 20, 40, 40], [50, 5, 60, 30]
FAR = [70, 70, 80, 80]


def pred(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels, dtype=torch.long)}


def ap(preds, targets, classes=1):
    return voc_ap(preds, targets, classes)[0], voc_ap(preds, targets, classes, all_point=True)[0]


# ------------------------------------------------------------------ average precision on hand-made boxes

def test_perfect_detections_score_one_on_every_metric():
    targets = [target([A], [0]), target([B, C], [0, 1])]
    preds = [pred([A], [0.9], [0]), pred([B, C], [0.8, 0.7], [0, 1])]
    metrics = detection_metrics(preds, targets, 2)
    assert metrics["map50"] == metrics["map50_area"] == pytest.approx(1.0)
    assert metrics["map"] == pytest.approx(1.0) and metrics["per_class_ap50"] == [1.0, 1.0]


def test_one_false_positive_at_rank_two_gives_the_hand_computed_ap():
    # TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    targets = [target([A, B], [0, 0])]
    preds = [pred([A, FAR, B], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert ap(preds, targets) == (pytest.approx((6 * 1 + 5 * 2 / 3) / 11), pytest.approx(0.5 * 1 + 0.5 * 2 / 3))


def test_a_missed_object_caps_recall_at_one_half():
    preds, targets = [pred([A], [0.9], [0])], [target([A, B], [0, 0])]
    assert ap(preds, targets) == (pytest.approx(6 / 11), pytest.approx(0.5))


def test_difficult_objects_neither_count_when_missed_nor_when_detected():
    targets = [target([A, B], [0, 0], [False, True])]
    assert ap([pred([A], [0.9], [0])], targets) == (pytest.approx(1.0), pytest.approx(1.0))  # B missed: no penalty
    assert ap([pred([B, A], [0.95, 0.9], [0, 0])], targets) == (pytest.approx(1.0), pytest.approx(1.0))  # B ignored
    plain = [target([A, B], [0, 0])]
    assert ap([pred([A], [0.9], [0])], plain)[0] == pytest.approx(6 / 11)


def test_a_duplicate_detection_of_one_object_is_a_false_positive():
    targets = [target([A, B], [0, 0])]
    preds = [pred([A, [0, 0, 10, 9.5], B], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert ap(preds, targets)[0] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_iou_at_or_below_one_half_is_a_miss_and_absent_classes_are_left_out_of_the_mean():
    # a box covering half the object's width: IoU exactly 0.5, not above it (the devkit's test is strict)
    targets = [target([A], [0])]
    mean, per_class = voc_ap([pred([[0, 0, 5, 10]], [0.9], [0])], targets, 3)
    assert per_class == [0.0, None, None] and mean == 0.0


def test_coco_map_ignores_difficult_objects_as_crowd_regions():
    targets = [target([A, B], [0, 0], [False, True])]
    assert detection_metrics([pred([A], [0.9], [0])], targets, 1)["map"] == pytest.approx(1.0)


# ------------------------------------------------------------------ generated scenes

def test_scene_boxes_are_the_drawn_shapes_exact_outlines():
    alpha, box = draw_shape("square", 64, 20.0, 32.0, 30.0, 0.0)
    ys, xs = (alpha[..., 0] > 0.5).nonzero()
    assert box == pytest.approx([32 - 20 / 2**0.5, 30 - 20 / 2**0.5, 32 + 20 / 2**0.5, 30 + 20 / 2**0.5])
    assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
    assert xs.min() <= box[0] + 1 and xs.max() >= box[2] - 2


def test_scenes_are_deterministic_by_seed_with_several_objects_per_image():
    a, ta = generate_scenes(20, size=32, seed=3)
    b, tb = generate_scenes(20, size=32, seed=3)
    c, _ = generate_scenes(20, size=32, seed=4)
    assert (a == b).all() and not (a == c).all()
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(ta, tb))
    counts = [len(labels) for _, labels in ta]
    assert min(counts) >= 1 and max(counts) > 1
    assert all(((boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 32).all()) for boxes, _ in ta)


def test_shapes_det_splits_are_disjoint_and_named_detection():
    bundle = load_dataset("shapes_det?images=40&size=32&classes=3")
    assert bundle.task == "detection" and bundle.metric == "map50" and bundle.num_classes == 3
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 40
    seen = [tuple(t["boxes"].flatten().tolist()) for s in (bundle.train, bundle.val, bundle.test) for t in s.targets]
    assert len(set(seen)) == 40
    with pytest.raises(ConfigError, match="few-shot subsets are for classification datasets"):
        load_dataset("shapes_det?images=40&size=32", samples_per_class=5)


# ------------------------------------------------------------------ VOC and COCO files

def test_voc_is_read_by_torchvision_with_difficult_flags_and_the_standard_split(tmp_path):
    from harness.data.detection import voc

    root = write_voc(tmp_path)
    bundle = voc(str(root), split_seed=0, val_fraction=0.2)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (4, 1, 2)
    first = bundle.test.targets[0]  # 000001: dog (2, 3, 20, 30), difficult cat
    assert first["boxes"].tolist() == [[1, 2, 20, 30], [24, 4, 48, 38]]
    assert first["labels"].tolist() == [11, 7] and first["difficult"].tolist() == [False, True]
    assert bundle.test.image(0).shape == (3, 40, 50)
    again = voc(str(root), split_seed=0, val_fraction=0.2)
    assert [t["boxes"].tolist() for t in again.val.targets] == [t["boxes"].tolist() for t in bundle.val.targets]
    with pytest.raises(ConfigError, match=r"VOC2007 trainval not found under .*nowhere/VOCdevkit; run `harness fetch voc"):
        voc(str(tmp_path / "nowhere"))


def test_coco_json_maps_category_ids_to_classes_and_keeps_crowds_as_ignored(tmp_path):
    path = write_coco(tmp_path)
    bundle = load_dataset(f"coco:{path}")
    assert bundle.class_names == ("car", "truck") and bundle.task == "detection"
    targets = bundle.train.targets + bundle.val.targets + bundle.test.targets
    assert len(targets) == 8 and sum(int(t["difficult"].sum()) for t in targets) == 1
    assert any(t["boxes"][0].tolist() == [4, 5, 24, 15] for t in targets)


# ------------------------------------------------------------------ detectors and weights

@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_resnet50_fpn_v2",
                                  "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn", "ssdlite320_mobilenet_v3_large"])
def test_torchvision_detector_weights_resolve_to_files_in_the_cache_and_are_never_downloaded(name, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert BACKBONES.get(name).task == "detection"
    for spec, enum in (("coco", get_model_weights(name).COCO_V1), ("imagenet", DETECTORS[name].imagenet())):
        with pytest.raises(ConfigError, match=rf"file {weights_file(enum).name} not found .*`harness fetch {name}`"):
            load_weights(spec, name)
    assert load_weights("none", name).kind == "none"


def test_coco_and_imagenet_weights_load_from_local_files_with_a_new_class_head(tmp_path, monkeypatch):
    name = "ssdlite320_mobilenet_v3_large"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    coco = get_model(name, weights=None, weights_backbone=None, num_classes=91).state_dict()
    imagenet = get_model("mobilenet_v3_large", weights=None).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(coco, weights_file(get_model_weights(name).COCO_V1))
    torch.save(imagenet, weights_file(DETECTORS[name].imagenet()))
    weights = load_weights("coco", name)
    model = build_detector(name, weights, 3, weights.preprocessing)
    state = model.detector.state_dict()
    key = "backbone.features.0.0.0.weight"
    assert torch.equal(state[key], coco[key]) and model.label_offset == 1
    assert model.detector.head.classification_head.module_list[0][1].out_channels == 6 * (3 + 1)
    model = build_detector(name, load_weights("imagenet", name), 3, weights.preprocessing)
    assert torch.equal(model.detector.backbone.features[0][0][0].weight, imagenet["features.0.0.weight"])


def test_a_harness_source_network_becomes_the_small_detectors_backbone(source_checkpoint):
    weights = load_weights(f"checkpoint:{source_checkpoint}", "fcos_resnet8")
    model = build_detector("fcos_resnet8", weights, 2, weights.preprocessing)
    stem = model.backbone.stages[0][0].weight
    assert torch.equal(stem, weights.state_dict["stages.0.0.weight"]) and model.backbone.num_stages == 4
    with pytest.raises(ConfigError, match="holds a 'resnet8' network; detector 'fcos_resnet20' takes a resnet20"):
        load_weights(f"checkpoint:{source_checkpoint}", "fcos_resnet20")


@pytest.mark.parametrize("values,message", [
    ({"method": "distill"}, "method 'distill': not for detection (dataset 'shapes_det'); it is for classification"),
    ({"method": "multibranch"}, "method 'multibranch': not for detection"),
    ({"dropout": 0.2}, "dropout=0.2: not used by detection (keep it at 0.0)"),
    ({"backbone": "resnet8"}, ("backbone 'resnet8' is a classification network; dataset 'shapes_det' is detection: "
                               "choose from: fcos_resnet8, fcos_resnet20")),
    ({"dataset": "digits"}, "backbone 'fcos_resnet8' is a detection network; dataset 'digits' is classification"),
])
def test_what_makes_no_sense_for_detection_is_refused_in_one_line(values, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        check_names(TrialConfig.from_dict({"dataset": "shapes_det", "backbone": "fcos_resnet8", **values}))


# ------------------------------------------------------------------ the loop trains detectors

def test_the_loop_trains_a_detector_and_scores_it_with_the_detection_metrics():
    config = TrialConfig.from_dict({"dataset": "shapes_det?images=48&size=32&classes=3", "backbone": "fcos_resnet8",
                                    "method": "scratch", "epochs": 2, "batch_size": 8, "lr": 0.01,
                                    "augment": "basic", "evaluate_test": True})
    result = fit(config)
    summary = result.summary
    assert summary["status"] == "ok" and summary["data"]["metric"] == "map50"
    for split in ("val", "test"):
        assert 0 <= summary[split]["map50"] <= 1 and len(summary[split]["per_class_ap50"]) == 3
    assert [k for k in summary["history"][-1] if k.startswith("val_")] == [
        "val_map50", "val_map50_area", "val_map", "val_map75", "val_detections_per_image"]
    assert summary["cost"]["params_trainable"] == summary["cost"]["params_total"] > 0
    assert fit(config).summary["test"] == summary["test"]  # deterministic by seed


def test_head_only_keeps_the_backbone_and_trains_the_pyramid_and_heads(source_checkpoint):
    config = TrialConfig.from_dict({"dataset": "shapes_det?images=32&size=32&classes=3", "backbone": "fcos_resnet8",
                                    "method": "linear_probe", "weights": f"checkpoint:{source_checkpoint}",
                                    "epochs": 1, "batch_size": 8, "lr": 0.01})
    result = fit(config)
    model = result.model
    weights = load_weights(f"checkpoint:{source_checkpoint}", "fcos_resnet8")
    assert model.frozen_stages == 4 and not result.summary["model"]["cached_features"]
    for key, value in weights.state_dict.items():
        assert torch.equal(model.detector.backbone.trunk.state_dict()[key], value), key
    assert 0 < result.summary["cost"]["params_trainable"] < result.summary["cost"]["params_total"]


def test_detection_is_a_registered_task_with_its_own_headline():
    task = TASKS.get("detection")
    assert task.headlines == ("map50", "map50_area", "map") and not task.batch_transform
    assert set(task.unused) == {"dropout", "label_smoothing", "mixup", "cutmix"}
