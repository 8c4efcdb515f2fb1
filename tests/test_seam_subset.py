"""The seam subset: which SynthPano questions need the ±180° seam, on hand-built scenes, and the
type/seam columns of the files SynthPano writes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from cora.data.synth import (
    CAPTION_QUERY,
    Scene,
    SynthObject,
    SynthPano,
    caption,
    ensure_synth_dataset,
    needs_seam,
    qa_pairs,
    question_type,
    sample_scene,
    straddles_seam,
    write_synth_dataset,
)
from cora.data.synth.scene import _shape_height


def _obj(shape: str, colour: str, yaw: float, dist: float = 5.0, radius: float = 0.1) -> SynthObject:
    return SynthObject(shape, colour, "small", yaw, dist, radius, _shape_height(shape, radius))


def _scene(*objects: SynthObject) -> Scene:
    return Scene(objects=tuple(objects), sky=0, ground=0, texture_offset=(0.0, 0.0))


# At yaw 178° the seam is 2° away: a half-width of 9.6° reaches across it, one of 0.8° does not.
CROSSING = _obj("sphere", "red", 178.0, dist=3.0, radius=0.5)
SHORT = _obj("cone", "blue", 178.0, dist=7.0, radius=0.1)
AHEAD = _obj("cube", "green", 0.0)
RIGHT = _obj("cylinder", "yellow", 90.0)


def test_straddles_seam_at_178_degrees_by_half_width() -> None:
    assert CROSSING.half_width_deg == pytest.approx(9.59, abs=0.01) and straddles_seam(CROSSING)
    assert SHORT.half_width_deg == pytest.approx(0.82, abs=0.01) and not straddles_seam(SHORT)
    assert straddles_seam(_obj("cube", "red", -179.5))  # the other side of the seam
    assert not straddles_seam(AHEAD) and not straddles_seam(RIGHT)


def test_behind_always_needs_the_seam() -> None:
    scene = _scene(AHEAD, RIGHT)
    assert needs_seam(scene, "What is behind you?", "nothing")


@pytest.mark.parametrize(
    ("objects", "query", "answer", "expected"),
    [
        # where / nearest / farthest: only the objects they name or answer
        ((CROSSING, AHEAD), "Where is the red sphere?", "behind you", True),
        ((SHORT, AHEAD), "Where is the blue cone?", "behind you", False),
        ((CROSSING, AHEAD), "Which object is nearest?", "the red sphere", True),
        ((CROSSING, AHEAD), "Which object is farthest?", "the green cube", False),
        # direction: the sector's arc, or an answered object that straddles
        ((CROSSING, AHEAD), "What is ahead?", "the green cube", False),
        ((CROSSING, AHEAD), "What is to the right?", "nothing", False),
        (
            (_obj("cube", "purple", 150.0, dist=3.0, radius=1.2), AHEAD),
            "What is behind you to the right?",
            "the purple cube",
            True,
        ),
        ((_obj("cube", "purple", 140.0), AHEAD), "What is behind you to the right?", "the purple cube", False),
        # count: any object; count_shape: objects of that shape only
        ((CROSSING, AHEAD), "How many objects are there?", "two", True),
        ((SHORT, AHEAD), "How many objects are there?", "two", False),
        ((CROSSING, SHORT), "How many spheres are there?", "one", True),
        ((CROSSING, SHORT), "How many cones are there?", "one", False),
        # next_to: the arc from X turning that way to the answer
        (
            (_obj("cone", "purple", 170.0), _obj("sphere", "yellow", -170.0), AHEAD),
            "What is to the right of the purple cone?",
            "the yellow sphere",
            True,
        ),
        (
            (_obj("cone", "purple", 170.0), _obj("sphere", "yellow", -170.0), AHEAD),
            "What is to the left of the yellow sphere?",
            "the purple cone",
            True,
        ),
        (
            (_obj("cone", "purple", 170.0), _obj("sphere", "orange", -170.0), RIGHT),
            "What is to the left of the purple cone?",
            "the yellow cylinder",
            False,
        ),
        ((AHEAD, RIGHT), "What is to the right of the green cube?", "the yellow cylinder", False),
        # opposite: the shorter arc from X to the answer object
        (
            (_obj("cube", "red", 10.0), _obj("cone", "blue", -175.0)),
            "Which colour is opposite the red cube?",
            "blue",
            True,
        ),
        (
            (_obj("cube", "red", -10.0), _obj("cone", "blue", 175.0)),
            "Which colour is opposite the red cube?",
            "blue",
            True,
        ),
        (
            (_obj("cube", "green", 80.0), _obj("cone", "purple", -90.0)),
            "Which colour is opposite the green cube?",
            "purple",
            False,
        ),
        ((AHEAD, RIGHT), "Which colour is opposite the green cube?", "none", False),
        ((CROSSING, RIGHT), "Which colour is opposite the red sphere?", "none", True),  # X itself straddles
    ],
)
def test_needs_seam_per_question_type(objects: tuple, query: str, answer: str, expected: bool) -> None:
    assert needs_seam(_scene(*objects), query, answer) is expected


def test_caption_needs_the_seam_when_any_object_straddles() -> None:
    with_seam, without = _scene(AHEAD, CROSSING), _scene(AHEAD, SHORT)
    assert needs_seam(with_seam, CAPTION_QUERY, caption(with_seam))
    assert not needs_seam(without, CAPTION_QUERY, caption(without))


def test_generated_questions_of_every_type_are_split_both_ways() -> None:
    rng = np.random.default_rng(3)
    seen: dict[str, set[bool]] = {}
    for _ in range(300):
        scene = sample_scene(rng)
        for query, answer in [(CAPTION_QUERY, caption(scene)), *qa_pairs(scene, rng)]:
            seen.setdefault(question_type(query), set()).add(needs_seam(scene, query, answer))
    assert seen.pop("behind") == {True}
    assert seen.pop("direction") <= {True, False}  # a straddling object in a sector next to the seam is rare
    assert all(flags == {True, False} for flags in seen.values()), seen


# sha256 of the files of SynthPano(6, seed=3) at 64x32 written before the type/seam columns existed,
# with those columns (CSV) and keys (JSONL qa) stripped again: nothing else may change.
BEFORE = {
    "train.csv": "e27aff52d928d0a2550cf4b6ee22e66170f52b3ee5f421db2c69c418eb3646db",
    "val.csv": "f6174dd69561d0c382aa7fc04aa467a682c288fef83a1e006d08f6941fc53e7b",
    "test.csv": "28d76ee0a71ede4d8d66bd906ac3d71c0cb58efc1a03263617373509561ec244",
    "train.jsonl": "6351497e1d73fbfea3691912006870291c8ef6279d3a8e15d1abe1d2360056f9",
    "val.jsonl": "516de420ccaad935bdb67160303ddead498ded12efc14f8e8c46960bfdbd4228",
    "test.jsonl": "3e09ae72e2965f6d865946d603dce918034f5cef34adbeab3915603cf5210f6c",
    "train_images.csv": "efcdf5b81c93217cf46b0b90bc41bf27ab473d6a78a503695a75dce111865b93",
    "images": "05774ab68509217e5d8b42612d1722a9abf4afc0bbd88eb7302be163bc08d1ad",
}


def _sha(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def _without_new_columns(out: Path, name: str) -> str:
    if name.endswith(".jsonl"):
        rows = [json.loads(line) for line in (out / name).read_text().splitlines()]
        for row in rows:
            for pair in row["qa"]:
                del pair["type"], pair["seam"]
        return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(r[:3] for r in csv.reader(io.StringIO((out / name).read_text())))
    return buffer.getvalue()


def test_files_are_byte_identical_apart_from_the_new_columns(tmp_path: Path) -> None:
    write_synth_dataset(tmp_path, 6, seed=3, width=64, height=32, workers=1)
    for name in ("train.csv", "val.csv", "test.csv", "train.jsonl", "val.jsonl", "test.jsonl"):
        assert _sha(_without_new_columns(tmp_path, name)) == BEFORE[name], name
    assert _sha((tmp_path / "train_images.csv").read_bytes()) == BEFORE["train_images.csv"]
    images = b"".join(p.read_bytes() for p in sorted((tmp_path / "images").glob("*.png")))
    assert _sha(images) == BEFORE["images"]


def test_csv_rows_are_the_samples_text_with_type_and_seam(tmp_path: Path) -> None:
    write_synth_dataset(tmp_path, 6, seed=3, width=64, height=32, workers=1)
    pano = SynthPano(6, seed=3, width=64, height=32)
    rows = list(csv.reader(io.StringIO((tmp_path / "train.csv").read_text())))
    assert rows[0] == ["url", "query", "annotation", "type", "seam"]
    expected = []
    for i in range(4):  # the train panoramas
        sample = pano.text(i)
        for query, answer in [(CAPTION_QUERY, sample.caption), *sample.qa]:
            seam = "1" if needs_seam(sample.scene, query, answer) else "0"
            expected.append([f"images/{i:05d}.png", query, answer, question_type(query), seam])
    assert rows[1:] == expected
    assert {r[3] for r in rows[1:]} >= {"caption", "behind", "count"} and {r[4] for r in rows[1:]} == {"0", "1"}
    line = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    sample = pano.text(0)
    assert line["qa"] == [
        {"query": q, "answer": a, "type": question_type(q), "seam": needs_seam(sample.scene, q, a)}
        for q, a in sample.qa
    ]


def test_ensure_rewrites_a_dataset_of_the_older_format(tmp_path: Path) -> None:
    ensure_synth_dataset(tmp_path, 4, seed=1, width=64, height=32)
    manifest = json.loads((tmp_path / "synth.json").read_text())
    assert manifest["format"] == 2
    # A dataset written before the type/seam columns: no format in its manifest, three CSV columns.
    del manifest["format"]
    (tmp_path / "synth.json").write_text(json.dumps(manifest))
    (tmp_path / "train.csv").write_text("url,query,annotation\n")
    ensure_synth_dataset(tmp_path, 4, seed=1, width=64, height=32)
    assert json.loads((tmp_path / "synth.json").read_text())["format"] == 2
    assert (tmp_path / "train.csv").read_text().startswith("url,query,annotation,type,seam\n")
