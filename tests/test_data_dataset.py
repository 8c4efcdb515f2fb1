"""PanoramaDataset / Collator / DataModule on a small SynthPano set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cora.config.schema import ImageProcessingConfig
from cora.data.datamodule import PanoramaDataModule, build_datamodule
from cora.data.dataset import Collator, PanoramaDataset
from cora.data.readers import read_records
from cora.data.records import DataError, Record
from cora.data.synth import write_synth_dataset
from cora.processors.text import ChatFormatter
from cora.processors.views import PanoramaViews

S = 16


def make_views(size: int) -> PanoramaViews:
    """The real views of the default strategy (global + 8 tiles) at ``size``."""
    return PanoramaViews.from_config(ImageProcessingConfig(image_size=size))


def make_formatter(tokenizer) -> ChatFormatter:
    return ChatFormatter(tokenizer)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, 10, seed=1, width=128, height=64)
    return out


@pytest.fixture(scope="module")
def tokenizer(kit_paths):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(kit_paths.language_model)


def test_text_items_and_collate_follow_the_batch_contract(synth_dir: Path, tokenizer) -> None:
    records, _ = read_records(synth_dir / "train.csv")
    ds = PanoramaDataset(records, make_views(S), make_formatter(tokenizer), max_length=128)
    item = ds[0]
    assert item["pixel_values"].shape == (9, 3, S, S) and item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].min() >= 0.0 and item["pixel_values"].max() <= 1.0
    answer = tokenizer.decode([t for t in item["labels"].tolist() if t != -100])
    assert answer == records[0].answer + "<|im_end|>"  # labels only on the answer (+ end of turn)
    items = [ds[i] for i in range(4)]
    batch = Collator(tokenizer.pad_token_id)(items)
    lengths = [len(it["input_ids"]) for it in items]
    assert batch["pixel_values"].shape == (4, 9, 3, S, S)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (4, max(lengths))
    assert len(set(lengths)) > 1  # the padding below is really exercised
    for row, n in enumerate(lengths):
        assert torch.equal(batch["input_ids"][row, :n], items[row]["input_ids"])
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert (batch["labels"][row, n:] == -100).all()
    assert batch["geometries"] == items[0]["geometries"] and batch["geometries"][0].kind == "global"
    assert batch["meta"][1]["query"] == records[1].query and batch["meta"][1]["references"] == [records[1].answer]


def test_image_only_items_have_no_text(synth_dir: Path) -> None:
    records, _ = read_records(synth_dir / "train.csv", image_only=True)
    ds = PanoramaDataset(records, make_views(S))
    batch = Collator(0)([ds[0], ds[1]])
    assert len(ds) == 8 and batch["pixel_values"].shape == (2, 9, 3, S, S)
    assert "input_ids" not in batch and "labels" not in batch


def test_eval_grouping_collects_every_reference(tmp_path: Path, synth_dir: Path, tokenizer) -> None:
    image = str(synth_dir / "images" / "00000.png")
    recs = [Record((image,), "Describe the panorama.", a, "x.csv", i) for i, a in enumerate(["one", "two"], 2)]
    recs.append(Record((image,), "How many?", "three", "x.csv", 4))
    ds = PanoramaDataset(recs, make_views(S), make_formatter(tokenizer), group_refs=True)
    assert len(ds) == 2 and ds[0]["meta"]["references"] == ["one", "two"]


def test_unreadable_image_and_too_long_text_follow_the_policy(tmp_path: Path, synth_dir: Path, tokenizer) -> None:
    good = str(synth_dir / "images" / "00000.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    recs = [
        Record((good,), "q", "a", "d.csv", 2),
        Record((str(broken),), "q", "a", "d.csv", 3),
        Record((good,), "a very long question " * 40, "a", "d.csv", 4),
    ]
    with pytest.raises(DataError, match=r"d\.csv:4: text too long"):
        PanoramaDataset(recs, make_views(S), make_formatter(tokenizer), max_length=40)
    ds = PanoramaDataset(recs, make_views(S), make_formatter(tokenizer), max_length=40, policy="skip")
    assert len(ds) == 2 and [(b.line, b.kind) for b in ds.log.rows] == [(4, "text too long")]
    batch = Collator(0)([ds[0], ds[1]])  # the unreadable image is dropped, with a warning
    assert batch["pixel_values"].shape[0] == 1
    strict = PanoramaDataset(recs[:2], make_views(S), make_formatter(tokenizer), max_length=40)
    with pytest.raises(DataError, match=r"d\.csv:3: .*broken\.png: not a readable image"):
        strict[1]


def _order(module: PanoramaDataModule) -> list[str]:
    return [m["query"] + m["image"] for batch in module.train_dataloader() for m in batch["meta"]]


def test_datamodule_shuffles_deterministically_by_seed_with_workers(synth_dir: Path, tokenizer) -> None:
    records, _ = read_records(synth_dir / "val.csv")
    ds = PanoramaDataset(records, make_views(8), make_formatter(tokenizer))

    def module(seed: int, workers: int) -> PanoramaDataModule:
        return PanoramaDataModule(ds, batch_size=4, num_workers=workers, seed=seed, pad_id=tokenizer.pad_token_id)

    first = _order(module(3, 0))
    assert sorted(first) == sorted(m["meta"]["query"] + m["meta"]["image"] for m in (ds[i] for i in range(len(ds))))
    assert _order(module(3, 2)) == first  # worker processes, same order
    assert _order(module(4, 0)) != first


def test_build_datamodule_per_stage(synth_dir: Path, tiny_config, tokenizer) -> None:
    data = {
        "train": str(synth_dir / "train.csv"),
        "val": str(synth_dir / "val.jsonl"),
        "vision_train": str(synth_dir / "train_images.csv"),
        "num_workers": 0,
    }
    cfg = tiny_config.model_copy(update={"data": tiny_config.data.model_copy(update=data)})
    # The real views and chat formatter, built from the config.
    vision = build_datamodule(cfg, tokenizer, "vision")
    batch = next(iter(vision.train_dataloader()))
    assert "input_ids" not in batch and batch["pixel_values"].shape[0] == min(8, vision.batch_size)
    assert vision.batch_size == cfg.training.stage_configs["vision"].batch_size
    size = cfg.image_processing.image_size
    assert batch["pixel_values"].shape[1:] == (9, 3, size, size)
    finetune = build_datamodule(cfg, tokenizer, "finetune")
    assert "labels" in next(iter(finetune.train_dataloader()))
    val = next(iter(finetune.val_dataloader()))
    assert val["meta"][0]["query"] == "Describe the panorama."  # the JSONL summary turn
    assert finetune.bad_rows["train"]["bad_rows"] == 0
    with pytest.raises(DataError, match="unknown stage 'nope'"):
        build_datamodule(cfg, tokenizer, "nope")


def test_view_cache_returns_the_same_views_and_is_bounded(synth_dir: Path, tokenizer) -> None:
    records, _ = read_records(synth_dir / "train.csv")
    plain = PanoramaDataset(records, make_views(S), make_formatter(tokenizer))
    cached = PanoramaDataset(records, make_views(S), make_formatter(tokenizer), view_cache=2)
    for i in (0, 1, 0, 15, 30, 0):
        assert torch.equal(cached[i]["pixel_values"], plain[i]["pixel_values"])
        assert torch.equal(cached[i]["input_ids"], plain[i]["input_ids"])
    assert len(cached._cache) == 2
