"""The vision prior: labels from geometry, training, atomic save with every weight, skip when current."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cora.config.sections.demo import VisionPriorConfig
from cora.processors.geometry import global_view, perspective_view
from cora.processors.views import PanoramaViews
from cora.recipes.demo.vision_prior import patch_labels, read_synth_jsonl, train_vision_prior, view_labels


def test_view_labels_follow_each_views_field_of_view():
    views = [global_view(64, 0), perspective_view(0, 0, 90, 64, 1), perspective_view(180, 0, 90, 64, 2)]
    objects = [
        {"yaw_deg": 30.0, "colour": "red", "shape": "cone"},  # inside the yaw-0 tile (|30| < 45)
        {"yaw_deg": -170.0, "colour": "blue", "shape": "cube"},
    ]  # across the seam, in the yaw-180 tile
    vocab = ["blue", "cone", "cube", "red"]
    labels = view_labels(objects, views, vocab)
    assert labels.tolist() == [[1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 1, 0]]


def test_patch_labels_mark_the_patches_an_objects_box_meets():
    # A box of ±4.2° around a direction covers pixels 29.7..34.3 of a 64-px, 90° tile: patch
    # rows/cols 3 and 4 of the 8×8 grid. The second box wraps the seam (x1 > x2).
    views = [perspective_view(0, 0, 90, 64, 0), perspective_view(180, 0, 90, 64, 1), perspective_view(90, 0, 90, 64, 2)]
    objects = [
        {"colour": "red", "shape": "cone", "bbox_2d": [250, 122, 262, 134]},
        {"colour": "blue", "shape": "cube", "bbox_2d": [506, 122, 6, 134]},
    ]
    vocab = ["blue", "cone", "cube", "red"]
    labels = patch_labels(objects, views, 8, vocab, (512, 256))
    assert labels.shape == (3, 64, 4)
    centre = [27, 28, 35, 36]
    assert labels[0].nonzero()[:, 0].unique().tolist() == centre
    assert labels[0, centre].tolist() == [[0, 1, 0, 1]] * 4
    assert labels[1, centre].tolist() == [[1, 0, 1, 0]] * 4
    assert labels[1].sum() == 8 and labels[2].sum() == 0


def test_jsonl_without_scene_annotations_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text(json.dumps({"images": ["a.png"], "objects": [{"bbox_2d": [0, 0, 1, 1], "desc": "a box"}]}) + "\n")
    with pytest.raises(ValueError, match=r"x.jsonl:1: objects need \['yaw_deg', 'colour', 'shape'\]"):
        read_synth_jsonl(bad)


@pytest.mark.parametrize("target", ["view", "patch"])
def test_vision_prior_learns_saves_every_weight_and_skips(kit_paths, tiny_config, tmp_path, target):
    from transformers import AutoModel

    from cora.data.synth import write_synth_dataset

    write_synth_dataset(tmp_path / "synth", n=10, seed=0, width=128, height=64, workers=1)
    vision = tmp_path / "kit" / "vision"
    shutil.copytree(kit_paths.vision, vision)
    before = AutoModel.from_pretrained(vision).state_dict()
    views = PanoramaViews.from_config(tiny_config.image_processing)
    cfg = VisionPriorConfig(enabled=True, target=target, steps=30, lr=5e-3, batch_size=32)

    summary = train_vision_prior(vision, tmp_path / "synth" / "train.jsonl", views, cfg, seed=0)
    assert not summary["skipped"] and summary["steps"] == 30
    assert summary["heldout_balanced_acc_after"] > summary["heldout_balanced_acc_before"]
    after = AutoModel.from_pretrained(vision).state_dict()
    assert after.keys() == before.keys()  # the unused pooling head is kept, nothing goes missing
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and all(".head." not in k for k in moved)
    assert not list(vision.parent.glob(".prior-*"))  # the temp folder is gone

    again = train_vision_prior(vision, tmp_path / "synth" / "train.jsonl", views, cfg, seed=0)
    assert again["skipped"] and again["status"] == "current"
