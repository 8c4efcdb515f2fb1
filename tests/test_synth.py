"""SynthPano: geometry of the rendering, text vs scene, boxes, determinism, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from cora.cli.main import main
from cora.data.synth import (
    CAPTION_QUERY,
    DIRECTIONS,
    Scene,
    SynthObject,
    SynthPano,
    caption,
    erp_bbox,
    qa_pairs,
    question_type,
    render_directions,
    render_erp,
    sample_scene,
    synth_corpus,
)
from cora.data.synth.language import QUESTION_TYPES
from cora.data.synth.scene import _shape_height
from cora.processors.geometry import erp_lonlat_to_pixel, erp_pixel_to_lonlat, perspective_view, wrap_deg

W, H = 256, 128


def _obj(shape: str, colour: str, yaw: float, dist: float, radius: float = 0.5, size: str = "small") -> SynthObject:
    return SynthObject(shape, colour, size, yaw, dist, radius, _shape_height(shape, radius), spin_deg=20.0)


def _scene(*objects: SynthObject) -> Scene:
    return Scene(objects=tuple(objects), sky=0, ground=0, texture_offset=(0.3, 0.7))


def _tile_ids_from_erp(ids: np.ndarray, yaw: float, size: int = 48) -> np.ndarray:
    """Sample an ERP id map into the tile looking at ``yaw`` (nearest pixel, via the geometry)."""
    lon, lat = perspective_view(yaw, 0.0, 90.0, size).pixel_lonlat()
    x, y = erp_lonlat_to_pixel(lon, lat, ids.shape[1], ids.shape[0])
    xi = np.floor(x + 0.5).astype(int) % ids.shape[1]
    yi = np.clip(np.floor(y + 0.5).astype(int), 0, ids.shape[0] - 1)
    return ids[yi, xi]


def _object_lon(ids: np.ndarray, index: int) -> float:
    """Circular mean longitude of an object's pixels: measured on the image, not read from the scene."""
    ys, xs = np.nonzero(ids == index)
    lon, _ = erp_pixel_to_lonlat(xs, ys, ids.shape[1], ids.shape[0])
    rad = np.radians(lon)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))


@pytest.mark.parametrize("yaw", [0.0, 37.0, 90.0, -100.0, 179.0, -176.0])
def test_object_at_yaw_appears_in_the_tile_looking_at_yaw(yaw: float) -> None:
    scene = _scene(_obj("sphere", "red", yaw, 4.0))
    _, ids = render_erp(scene, W, H)
    facing = _tile_ids_from_erp(ids, yaw)
    cols = np.flatnonzero((facing == 0).any(axis=0))
    assert len(cols) > 3
    assert abs(cols.mean() - facing.shape[1] / 2) < 2.0  # centred horizontally in that tile
    assert not (_tile_ids_from_erp(ids, yaw + 180.0) == 0).any()  # and absent from the opposite one
    assert abs(wrap_deg(_object_lon(ids, 0) - yaw)) < 2.0


def test_erp_sampled_into_a_tile_matches_rendering_the_tile_directly() -> None:
    # Two independent paths to the same tile: ray casting through the tile's own geometry,
    # and the ERP resampled with the geometry contract. They must agree.
    scene = _scene(
        _obj("cube", "blue", 172.0, 3.5, 0.9, "large"),
        _obj("cone", "green", -150.0, 5.0),
        _obj("cylinder", "yellow", 100.0, 4.0),
    )
    _, erp_ids = render_erp(scene, 1024, 512)
    for yaw in (180.0, -135.0, 90.0):
        view = perspective_view(yaw, 0.0, 90.0, 64)
        _, direct = render_directions(scene, *view.pixel_lonlat())
        sampled = _tile_ids_from_erp(erp_ids, yaw, 64)
        assert (direct >= 0).sum() > 30
        assert (direct == sampled).mean() > 0.98


def test_windowed_erp_render_equals_full_render() -> None:
    pano = SynthPano(4, seed=3, width=W, height=H)
    for i in range(4):
        scene = pano.scene(i)
        img_w, ids_w = render_erp(scene, W, H, windowed=True)
        img_f, ids_f = render_erp(scene, W, H, windowed=False)
        assert np.array_equal(ids_w, ids_f) and np.array_equal(img_w, img_f)


def test_object_across_the_seam_is_whole() -> None:
    scene = _scene(_obj("cube", "purple", 179.0, 3.5, 0.9, "large"))
    _, ids = render_erp(scene, W, H)
    assert (ids[:, 0] == 0).any() and (ids[:, -1] == 0).any()  # split by the ERP's edges...
    x1, y1, x2, y2 = erp_bbox(ids, 0)
    assert x1 > x2  # ...so its box wraps
    rolled = np.roll(ids == 0, W // 2, axis=1)
    assert ndimage.label(rolled)[1] == 1  # one piece on the sphere
    tile = _tile_ids_from_erp(ids, 180.0, 64) == 0
    assert ndimage.label(tile)[1] == 1  # and one piece in the tile looking back
    assert not (tile[:, 0].any() or tile[:, -1].any())  # not cut by the tile's borders
    mask = ids == 0
    outside = mask.copy()
    outside[:, x2:x1] = False
    assert np.array_equal(outside, mask)  # every pixel inside the wrapped box
    assert not mask[:y1].any() and not mask[y2:].any()


def test_boxes_contain_exactly_the_object_pixels() -> None:
    sample = SynthPano(3, seed=1, width=W, height=H)[2]
    for i, box in enumerate(sample.bboxes):
        x1, y1, x2, y2 = box
        mask = sample.ids == i
        assert mask.sum() > 5
        if x1 < x2:
            assert mask[y1:y2, x1:x2].sum() == mask.sum()
            assert mask[:, x1].any() and mask[:, x2 - 1].any() and mask[y1].any() and mask[y2 - 1].any()


def test_captions_and_answers_agree_with_the_rendered_image() -> None:
    pano = SynthPano(12, seed=5, width=W, height=H)
    for i in range(len(pano)):
        sample = pano[i]
        objs = sample.scene.objects
        measured = {o.name: _object_lon(sample.ids, k) for k, o in enumerate(objs)}
        sector = {name: DIRECTIONS[round(lon / 45.0) % 8] for name, lon in measured.items()}
        for o in objs:
            assert f"a {o.size} {o.name} {sector[o.name]}" in sample.caption
        nearest = min(objs, key=lambda o: o.distance_m)
        assert sample.caption.endswith(f"The nearest is the {nearest.name}.")
        answers = dict(sample.qa)
        behind = [n for n, s in sector.items() if s == "behind you"]
        assert answers["What is behind you?"] == (f"the {behind[0]}" if behind else "nothing")
        assert answers["How many objects are there?"] == ["zero", "one", "two", "three", "four", "five"][len(objs)]
        for query, answer in sample.qa:
            if query.startswith("What is to the ") and " of the " in query:
                side, name = query.removeprefix("What is to the ").removesuffix("?").split(" of the ")
                sign = -1 if side == "left" else 1
                turn = {n: (sign * (lon - measured[name])) % 360 for n, lon in measured.items() if n != name}
                assert answer == f"the {min(turn, key=turn.get)}"
            if query.startswith("Which colour is opposite the "):
                name = query.removeprefix("Which colour is opposite the ").removesuffix("?")
                off = {n: abs(wrap_deg(lon - measured[name] - 180)) for n, lon in measured.items() if n != name}
                best = min(off, key=off.get)
                assert answer == (best.split()[0] if off[best] <= 45 else "none")
            if query.startswith("Where is the "):
                assert answer == sector[query.removeprefix("Where is the ").removesuffix("?")]


def test_text_is_independent_of_resolution_and_corpus_covers_it() -> None:
    small, large = SynthPano(3, seed=2, width=64, height=32), SynthPano(3, seed=2, width=W, height=H)
    assert [small.text(i).caption for i in range(3)] == [large.text(i).caption for i in range(3)]
    corpus = synth_corpus(3, seed=2)
    assert large.text(1).caption in corpus and "Describe the panorama." in corpus
    train_only = synth_corpus(10, seed=2, splits=("train",))
    texts = SynthPano(10, seed=2)
    assert texts.text(7).caption in train_only
    assert texts.text(8).caption not in train_only and texts.text(9).caption not in train_only  # val, test
    scene = large.scene(0)
    assert caption(scene) == large.text(0).caption
    assert qa_pairs(scene, np.random.default_rng([2, 0, 1])) == large.text(0).qa


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_synth_is_deterministic_and_writes_every_format(tmp_path: Path, capsys) -> None:
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert (
            main(["data", "synth", "--out", str(tmp_path / name), "--n", "10", "--seed", str(seed), "--size", "128x64"])
            == 0
        )
    a, b, c = (_tree_bytes(tmp_path / n) for n in "abc")
    assert a == b
    assert a["images/00000.png"] != c["images/00000.png"]
    assert {"train.csv", "val.csv", "test.csv", "train.jsonl", "train_images.csv", "synth.json"} <= set(a)
    assert len([k for k in a if k.startswith("images/")]) == 10
    header = a["train.csv"].decode().splitlines()[0]
    assert header == "url,query,annotation,type,seam"
    line = json.loads(a["train.jsonl"].decode().splitlines()[0])
    assert line["images"] == ["images/00000.png"] and (line["width"], line["height"]) == (128, 64)
    assert all(len(o["bbox_2d"]) == 4 for o in line["objects"])
    assert json.loads(a["synth.json"])["splits"]["train"]["panoramas"] == 8
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "2", "--size", "100x60"]) == 2
    assert "2:1" in capsys.readouterr().err


def test_ensure_synth_dataset_reuses_an_identical_dataset(tmp_path: Path) -> None:
    from cora.data.synth import ensure_synth_dataset

    ensure_synth_dataset(tmp_path, 4, seed=1, width=64, height=32)
    png = tmp_path / "images" / "00002.png"
    stamp = png.stat().st_mtime_ns
    ensure_synth_dataset(tmp_path, 4, seed=1, width=64, height=32)
    assert png.stat().st_mtime_ns == stamp  # reused
    ensure_synth_dataset(tmp_path, 4, seed=2, width=64, height=32)
    assert json.loads((tmp_path / "synth.json").read_text())["seed"] == 2  # regenerated
    png.unlink()
    ensure_synth_dataset(tmp_path, 4, seed=2, width=64, height=32)
    assert png.is_file()  # a missing file triggers a rewrite


@pytest.mark.parametrize("yaw", [45.0, 180.0, -90.0])
def test_real_views_show_the_object_in_the_tile_at_its_yaw(yaw: float) -> None:
    # Through the real view pipeline: the red object must be centred in the tile looking at yaw.
    from cora.config.schema import ImageProcessingConfig
    from cora.processors.views import PanoramaViews

    views = PanoramaViews.from_config(ImageProcessingConfig(image_size=48))
    image, _ = render_erp(_scene(_obj("cube", "red", yaw, 3.5, 0.8, "large")), 512, 256)
    batch = views(image)
    px = batch.pixels.numpy()  # [V, 3, S, S]
    red = (px[:, 0] > 0.25) & (px[:, 0] > 2 * px[:, 1]) & (px[:, 0] > 2 * px[:, 2])  # [V, S, S]
    tile = next(i for i, g in enumerate(batch.geometries) if g.kind != "global" and abs(wrap_deg(g.yaw_deg - yaw)) < 1)
    cols = np.flatnonzero(red[tile].any(axis=0))
    assert len(cols) > 4 and abs(cols.mean() - 24) < 2.5
    opposite = next(
        i for i, g in enumerate(batch.geometries) if g.kind != "global" and abs(wrap_deg(g.yaw_deg - yaw - 180)) < 1
    )
    assert not red[opposite].any()


def test_parallel_generation_writes_the_same_bytes(tmp_path: Path) -> None:
    from cora.data.synth import write_synth_dataset

    write_synth_dataset(tmp_path / "one", 6, seed=4, width=64, height=32, workers=1)
    write_synth_dataset(tmp_path / "two", 6, seed=4, width=64, height=32, workers=2)
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")


def test_synth_jsonl_reads_back_with_norm1000_boxes_of_the_rendered_objects(tmp_path: Path) -> None:
    from cora.data.jsonl import norm1000_points
    from cora.data.readers import read_records
    from cora.data.synth import write_synth_dataset

    write_synth_dataset(tmp_path, 4, seed=9, width=128, height=64)
    records, log = read_records(tmp_path / "train.jsonl")
    assert log.ok
    pano = SynthPano(4, seed=9, width=128, height=64)
    sample = pano[0]
    turns = {r.query: r.answer for r in records if r.line == 1}
    assert turns["Describe the panorama."] == sample.caption
    for obj, box in zip(sample.scene.objects, sample.bboxes):
        answer = json.loads(turns[f"Locate the {obj.size} {obj.name}."])
        assert answer == {"bbox_2d": norm1000_points(box, 128, 64)}
    assert all(turns[q] == a for q, a in sample.qa)


def test_every_generated_question_has_its_template_type() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        for query, _answer in qa_pairs(sample_scene(rng), rng):
            kind = question_type(query)
            assert kind in QUESTION_TYPES, query
            seen.add(kind)
    assert seen == set(QUESTION_TYPES)  # every template is reached, and each maps to its own type
    assert question_type(CAPTION_QUERY) == "caption"
    assert question_type("What is the weather like?") == "other"
    assert question_type("Where is the red sphere?") == "where"
    assert question_type("Where is the pink sphere?") == "other"
