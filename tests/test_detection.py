"""Instance targets, COCO reading, COCO-style AP, and Mask R-CNN on a micro ViT (CPU, 48-80 px frames)."""
import json

import numpy as np
import pytest
import torch

from conftest import require_extra
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.data.instances import CocoInstances, InstanceCollate, instance_targets, thing_class_ids
from mask3d_vit.eval.detection import CocoRecords, coco_metrics, format_ap_table
from mask3d_vit.io import write_json, write_png
from mask3d_vit.models.detection import DetectorConfig, ViTMaskRCNN
from mask3d_vit.viz.detection import draw_instances

NYU13 = get_class_set("nyu13")
CHAIR, TABLE, WALL, FURNITURE = (NYU13.names.index(n) for n in ("chair", "table", "wall", "furniture"))

TINY = DetectorConfig(encoder="vit_micro_patch16", img_size=(64, 64), drop_path_rate=0.0, pyramid_channels=32,
                      min_size=64, max_size=96, anchor_sizes=(8, 16, 32, 64, 128), rpn_pre_nms_top_n_train=200,
                      rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50,
                      rpn_batch_size_per_image=64, box_batch_size_per_image=32, box_head_dim=64, mask_head_dim=16)


def rect(h, w, y0, y1, x0, x1):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


# -- targets from label + instance maps ------------------------------------------------------------------------------
def test_thing_classes_per_class_set():
    scannet = get_class_set("scannet20")
    things = thing_class_ids(scannet)
    assert len(things) == 18
    assert {scannet.names[i] for i in things}.isdisjoint({"wall", "floor", "unlabeled"})
    assert [NYU13.names[i] for i in thing_class_ids(NYU13)] == [
        "bed", "books", "chair", "furniture", "objects", "picture", "sofa", "table", "tv", "window"]
    assert thing_class_ids(NYU13, stuff=()) == tuple(range(1, 14))
    with pytest.raises(ValueError, match="not in class set"):
        thing_class_ids(NYU13, stuff=("lava",))


def test_instance_targets_one_box_and_mask_per_instance():
    h, w = 40, 50
    label = torch.zeros(h, w, dtype=torch.int64)
    instance = torch.zeros(h, w, dtype=torch.int64)
    label[2:12, 3:13], instance[2:12, 3:13] = CHAIR, 7               # a chair...
    label[2:4, 3:13] = FURNITURE                                      # ...with a mislabelled edge (20 of 100 px)
    label[20:30, 0:5], instance[20:30, 0:5] = TABLE, 3                # an occluded table: two disconnected parts
    label[20:30, 10:15], instance[20:30, 10:15] = TABLE, 3
    label[30:40, 30:50], instance[30:40, 30:50] = WALL, 9             # stuff: never an instance
    label[0:3, 40:43], instance[0:3, 40:43] = CHAIR, 4                # 9 px < min_area 16: a fragment
    instance[10:20, 40:50] = 5                                        # unlabeled pixels only
    label[15:19, 20:24], instance[15:19, 20:24] = CHAIR, 6            # exactly min_area: kept
    out = instance_targets(label, instance, thing_ids=thing_class_ids(NYU13), min_area=16)

    assert out["labels"].tolist() == [TABLE, CHAIR, CHAIR]           # ascending instance id: 3, 6, 7
    assert out["boxes"].dtype == torch.float32 and out["masks"].dtype == torch.uint8
    # Pixel-edge boxes: the mask's last row/column is included, so x1 = last column + 1.
    assert out["boxes"].tolist() == [[0, 20, 15, 30], [20, 15, 24, 19], [3, 2, 13, 12]]
    for mask, inst_id in zip(out["masks"], (3, 6, 7)):
        assert torch.equal(mask.bool(), instance == inst_id)


def test_instance_targets_empty_frame():
    out = instance_targets(torch.zeros(8, 8, dtype=torch.int64), torch.zeros(8, 8, dtype=torch.int64),
                           thing_ids=(1,))
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,) and out["masks"].shape == (0, 8, 8)
    with pytest.raises(ValueError, match="must both be"):
        instance_targets(torch.zeros(8, 8, dtype=torch.int64), torch.zeros(8, 9, dtype=torch.int64), thing_ids=(1,))


def test_collate_stacks_or_lists_and_explains_missing_maps():
    collate = InstanceCollate(thing_ids=thing_class_ids(NYU13))

    def sample(h, w):
        label = torch.full((h, w), CHAIR)
        return {"rgb": torch.zeros(3, h, w, dtype=torch.uint8), "label": label, "instance": torch.ones(h, w).long(),
                "frame_id": f"f{h}"}

    batch = collate([sample(32, 32), sample(32, 32)])
    assert batch["rgb"].shape == (2, 3, 32, 32) and batch["frame_id"] == ["f32", "f32"]
    assert [t["labels"].tolist() for t in batch["instances"]] == [[CHAIR], [CHAIR]]
    mixed = collate([sample(32, 32), sample(16, 48)])
    assert isinstance(mixed["rgb"], list) and mixed["instances"][1]["masks"].shape == (1, 16, 48)
    with pytest.raises(KeyError, match="no instance map"):
        collate([{"rgb": torch.zeros(3, 8, 8, dtype=torch.uint8), "label": torch.zeros(8, 8).long()}])


# -- COCO json reader ------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")  # its decode vs NumPy 2
def test_coco_reader(tmp_path):
    require_extra("pycocotools")
    from pycocotools import mask as mask_utils

    write_png(tmp_path / "img" / "a.png", np.full((20, 30, 3), 100, np.uint8))
    write_png(tmp_path / "img" / "b.png", np.zeros((20, 30, 3), np.uint8))
    rle = mask_utils.encode(np.asfortranarray(rect(20, 30, 10, 20, 20, 30).numpy().astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "iscrowd": 0, "bbox": [2, 3, 10, 5],
         "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]},                                  # polygon, 10x5 px
        {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": [20, 10, 10, 10], "segmentation": rle},
        {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 1, "bbox": [0, 0, 30, 20], "segmentation": rle},
        {"id": 4, "image_id": 1, "category_id": 7, "iscrowd": 0, "bbox": [0, 0, 2, 2],
         "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]},                                    # a 4 px fragment
    ]
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 30},
                       {"id": 2, "file_name": "b.png", "height": 20, "width": 30}],
            "annotations": anns, "categories": [{"id": 7, "name": "lamp"}, {"id": 3, "name": "cup"}]}
    write_json(tmp_path / "inst.json", data)
    ds = CocoInstances(tmp_path / "inst.json", tmp_path / "img")
    assert ds.class_set.names == ("unlabeled", "cup", "lamp") and ds.category_ids == (3, 7)
    first = ds[0]
    assert first["rgb"].shape == (3, 20, 30) and first["frame_id"] == "a.png"
    t = first["instances"]
    assert t["labels"].tolist() == [2, 1]                      # lamp, cup; crowd and fragment skipped
    assert t["boxes"][1].tolist() == [20, 10, 30, 20]
    assert torch.equal(t["masks"][1].bool(), rect(20, 30, 10, 20, 20, 30))
    assert t["masks"][0].sum() == 50 and t["boxes"][0].tolist() == [2, 3, 12, 8]
    assert ds[1]["instances"]["boxes"].shape == (0, 4)        # negatives stay in
    batch = InstanceCollate(thing_ids=(1, 2))([first, ds[1]])
    assert batch["instances"][0] is first["instances"]

    data["annotations"].append({"id": 9, "image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1],
                                "segmentation": [[0, 0, 1, 0, 1, 1]]})
    write_json(tmp_path / "bad.json", data)
    with pytest.raises(ValueError, match="annotation 9 has category 5"):
        CocoInstances(tmp_path / "bad.json", tmp_path / "img")


# -- COCO-style AP ---------------------------------------------------------------------------------------------------
def detections(boxes, scores, labels, h, w):
    masks = torch.stack([rect(h, w, y0, y1, x0, x1) for x0, y0, x1, y1 in boxes]).float()[:, None]
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels), "masks": masks}


def test_coco_metrics_hand_checked():
    require_extra("pycocotools")
    h, w = 100, 100
    gt_boxes = [[10, 10, 30, 30], [50, 50, 90, 75]]                  # 20x20 and 40x25 (1000 px)
    masks = torch.stack([rect(h, w, y0, y1, x0, x1) for x0, y0, x1, y1 in gt_boxes]).to(torch.uint8)
    target = {"boxes": torch.tensor(gt_boxes, dtype=torch.float32), "labels": torch.tensor([CHAIR, CHAIR]),
              "masks": masks}
    # C: a confident false positive; A: exact on GT 1; B: IoU 680 / 1000 = 0.68 with GT 2.
    pred = detections([[0, 90, 5, 95], [10, 10, 30, 30], [50, 50, 90, 67]], [0.95, 0.9, 0.8], [CHAIR] * 3, h, w)
    records = CocoRecords()
    records.add(0, target, pred)
    metrics = coco_metrics(records, class_names=NYU13.names, thing_ids=thing_class_ids(NYU13))
    # Ranked C (FP), A (TP), B. Where B matches (IoU thresholds 0.50-0.65, four of ten): precision 1/2 at recall
    # 1/2 and 2/3 at recall 1; COCO's interpolated precision is 2/3 at all 101 recall points -> AP 2/3. Where B
    # misses (0.70-0.95, six of ten): recall stops at 1/2 with precision 1/2 -> 51 of 101 points at 1/2.
    hit, miss = 2 / 3, 0.5 * 51 / 101
    expected = {"AP": (4 * hit + 6 * miss) / 10, "AP50": hit, "AP75": miss}
    for prefix in ("box", "mask"):                                   # box-shaped masks: identical mask AP
        for key, value in expected.items():
            assert metrics[f"{prefix}_{key}"] == pytest.approx(100 * value, abs=1e-6), (prefix, key)
        # Classes without ground truth get no entry and do not dilute the mean.
        assert [k for k in metrics if k.startswith(f"{prefix}_AP/")] == [f"{prefix}_AP/chair"]
        assert metrics[f"{prefix}_AP/chair"] == pytest.approx(metrics[f"{prefix}_AP"])
    table = format_ap_table(metrics, class_names=NYU13.names, thing_ids=thing_class_ids(NYU13))
    assert "| chair | 41.8 | 41.8 |" in table and "| bed | - | - |" in table

    # Records of two ranks merged (gt ids renumbered) score exactly like records built in one process.
    second = detections([[50, 50, 90, 75]], [0.7], [CHAIR], h, w)
    together, rank0, rank1 = CocoRecords(), CocoRecords(), CocoRecords()
    for image_id, (records, prediction) in enumerate([(rank0, pred), (rank1, second)]):
        together.add(image_id, target, prediction)
        records.add(image_id, target, prediction)
    rank0.extend(rank1)
    assert [a["id"] for a in rank0.gt] == [1, 2, 3, 4]
    names, things = NYU13.names, thing_class_ids(NYU13)
    assert coco_metrics(rank0, class_names=names, thing_ids=things) == coco_metrics(together, class_names=names,
                                                                                     thing_ids=things)

    nothing = CocoRecords()
    nothing.add(0, target, {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                            "labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 1, h, w)})
    assert coco_metrics(nothing, class_names=NYU13.names, thing_ids=thing_class_ids(NYU13))["mask_AP50"] == 0.0


# -- the model -------------------------------------------------------------------------------------------------------
def toy_sample(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    label = torch.zeros(h, w, dtype=torch.int64)
    instance = torch.zeros(h, w, dtype=torch.int64)
    label[4:20, 6:26], instance[4:20, 6:26] = CHAIR, 1
    label[h - 20:h - 4, w - 30:w - 6], instance[h - 20:h - 4, w - 30:w - 6] = TABLE, 2
    return {"rgb": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g), "label": label,
            "instance": instance, "frame_id": f"toy{seed}"}


@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_forward_backward_and_inference(size):
    torch.manual_seed(0)
    model = ViTMaskRCNN.from_config(TINY, num_classes=len(NYU13.names))
    batch = InstanceCollate(thing_ids=thing_class_ids(NYU13))([toy_sample(*size, 0), toy_sample(*size, 1)])
    out = model(batch)
    assert set(out) == {"loss", "loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                        "loss_mask"}
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    vit = model.detector.backbone.vit.encoder
    for name, p in [("patch_embed", vit.patch_embed.proj.weight), ("block 0", vit.blocks[0].attn.qkv.weight),
                    ("mask head", model.detector.roi_heads.mask_predictor.mask_fcn_logits.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        dets = model(batch)["detections"]
    assert len(dets) == 2
    for d in dets:
        assert d["masks"].shape[1:] == (1, *size) and d["boxes"].shape == (len(d["scores"]), 4)
    # Under bf16 autocast only the backbone drops precision: boxes are decoded in fp32.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        dets = model(batch)["detections"]
    assert dets[0]["boxes"].dtype == torch.float32 and dets[0]["masks"].dtype == torch.float32


def test_layer_decay_groups_and_bad_labels():
    from mask3d_vit.engine.optim import OptimConfig, build_optimizer

    model = ViTMaskRCNN.from_config(TINY, num_classes=len(NYU13.names))
    optimizer = build_optimizer(model, OptimConfig(layer_decay=0.5))
    scale = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    vit = model.detector.backbone.vit.encoder
    heads = model.detector.roi_heads
    # micro ViT: stem, block 0, block 1, then everything else -> 0.5^3, 0.5^2, 0.5, 1
    assert scale[id(vit.patch_embed.proj.weight)] == 0.125
    assert scale[id(vit.blocks[0].mlp.fc1.weight)] == 0.25 and scale[id(vit.blocks[1].mlp.fc1.weight)] == 0.5
    assert scale[id(heads.box_predictor.cls_score.weight)] == 1.0
    assert scale[id(model.detector.backbone.neck.project[0][0][0].weight)] == 1.0
    assert decay[id(vit.pos_embed)] == 0.0 and decay[id(vit.blocks[0].mlp.fc1.weight)] > 0

    batch = InstanceCollate(thing_ids=(CHAIR, TABLE))([toy_sample(64, 64, 0)])
    batch["instances"][0]["labels"][0] = 99
    with pytest.raises(ValueError, match="outside 1..13"):
        model(batch)


def test_draw_instances():
    image = np.zeros((40, 60, 3), np.uint8)
    pred = detections([[5, 5, 25, 25], [30, 10, 50, 30]], [0.9, 0.2], [CHAIR, TABLE], 40, 60)
    out = draw_instances(image, pred, NYU13, score_threshold=0.5)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert out[15, 15].any() and not out[20, 40].any()          # the 0.2 table is below the threshold
    assert np.array_equal(out[0, 0], [0, 0, 0])
    same = draw_instances(torch.from_numpy(image).permute(2, 0, 1), pred, NYU13, score_threshold=0.5)
    assert np.array_equal(out, same)
    with pytest.raises(ValueError, match="masks are"):
        draw_instances(np.zeros((20, 20, 3), np.uint8), pred, NYU13)


# -- the task: a short run end to end --------------------------------------------------------------------------------
def test_short_synthrooms_run_learns_its_training_frames(tmp_path):
    require_extra("pycocotools")
    from mask3d_vit.config import from_dict, to_dict
    from mask3d_vit.tasks.detection import DetectionConfig, load_detection_model, run_detection

    def run(out, *, epochs, lr):
        torch.manual_seed(0)
        frames = {"format": "synthrooms", "num_frames": 4, "seed": 0}
        cfg = from_dict(DetectionConfig, {
            # The same 4 frames, unaugmented, for training and evaluation.
            "data": {"sources": [frames], "val_sources": [frames], "size": [64, 80], "augment": False},
            "model": to_dict(TINY) | {"img_size": [64, 80]},
            "train": {"epochs": epochs, "batch_size": 4, "precision": "fp32", "device": "cpu", "eval_every": 0,
                      "log_every": 10},
            "optim": {"base_lr": lr, "weight_decay": 0.0, "betas": [0.9, 0.999], "warmup_epochs": 1,
                      "schedule": "constant", "layer_decay": 0.9},
        })
        return run_detection(cfg, out)

    # Baseline: the same model and frames after one step at learning rate 0, i.e. the initial weights.
    baseline = run(tmp_path / "baseline", epochs=1, lr=0.0)
    result = run(tmp_path, epochs=25, lr=0.1)
    # Learned, not one lucky match (that would score a single class): several classes found, AP50 well above the
    # initial weights' (this CPU, fp32: box 25, mask 19, 3 classes with box AP > 0; initial weights: 0, 0, none).
    assert result["eval/box_AP50"] >= baseline["eval/box_AP50"] + 15, (result, baseline)
    assert result["eval/mask_AP50"] >= baseline["eval/mask_AP50"] + 10, (result, baseline)
    classes = [k for k, v in result.items() if k.startswith("eval/box_AP/") and v > baseline[k]]
    assert len(classes) >= 2, result
    assert result["loss"] < 0.5 * baseline["loss"], (result["loss"], baseline["loss"])
    assert "| **AP50** |" in (tmp_path / "eval_val.md").read_text()
    assert json.loads((tmp_path / "eval_val.json").read_text())["box_AP50"] == pytest.approx(result["eval/box_AP50"])
    assert list((tmp_path / "figures").glob("*.png"))

    model, stored, _ = load_detection_model(tmp_path)
    assert stored.class_set == "synthrooms" and tuple(stored.class_names) == NYU13.names
    assert model.num_classes == len(NYU13.names) and not model.training


def test_cli_and_recipes():
    from mask3d_vit.cli import build_parser
    from mask3d_vit.config import RECIPES_DIR, load_config
    from mask3d_vit.tasks.detection import DetectionConfig
    from mask3d_vit.tasks.registry import TASKS

    DETECTION_RECIPE = TASKS["det"].recipe
    args = build_parser().parse_args(["finetune", "det", "--out", "runs/x", "train.epochs=1"])
    assert args.config == DETECTION_RECIPE and args.overrides == ["train.epochs=1"] and callable(args.func)
    recipes = sorted(RECIPES_DIR.glob("det_*.yaml"))
    assert DETECTION_RECIPE in [r.stem for r in recipes]
    for recipe in recipes:  # every key of every shipped recipe exists and has the right type
        cfg = load_config(DetectionConfig, recipe)
        assert len(cfg.model.anchor_sizes) == len(cfg.model.scale_factors) + 1, recipe.name
