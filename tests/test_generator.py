"""PanoramaGenerator with the tiny kit model: cached = uncached, batch = one by one, streaming, loading."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from cora.inference import AnswerGenerator, DecodingOptions, PanoramaGenerator
from cora.inference.loading import RunLoadError

OPTIONS = DecodingOptions(max_new_tokens=8)


@pytest.fixture(scope="module")
def tiny(tiny_config, kit_paths, tmp_path_factory):
    """The tiny model, with a language model whose answers depend on its input.

    A freshly initialised tiny LM repeats one token whatever it is shown, which would make
    "batch == one by one" true for the wrong reason; larger random weights (saved as the
    pretrained LM folder, so every loading path sees them) give input-dependent answers.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cora.model import build_model

    lm_dir = tmp_path_factory.mktemp("varied_lm")
    lm = AutoModelForCausalLM.from_pretrained(kit_paths.language_model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in lm.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    lm.save_pretrained(lm_dir)
    AutoTokenizer.from_pretrained(kit_paths.language_model).save_pretrained(lm_dir)
    # the mlp resampler keeps these tests fast (the generator does not depend on the resampler)
    models = tiny_config.models.model_copy(
        update={
            "vision_name": str(kit_paths.vision),
            "language_model_name": str(lm_dir),
            "resampler_type": "mlp",
            # small: batches of 2 and of 3 then give the same greedy tokens (a wide MLP's float rounding
            # differs with the batch size and can flip a near-tie of this random LM)
            "resampler": tiny_config.models.resampler.model_copy(update={"hidden_dim": 192}),
        }
    )
    cfg = tiny_config.model_copy(update={"models": models})
    model = build_model(cfg).eval()
    with torch.no_grad():  # the panorama projector starts small: make the panorama matter too
        for p in model.panorama_projector.parameters():
            p.mul_(20.0)
    return model, cfg


@pytest.fixture(scope="module")
def panoramas(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("panos")
    ramp = np.linspace(0, 255, 128, dtype=np.uint8)[None, :, None]
    images = [
        np.zeros((64, 128, 3), np.uint8),
        np.full((64, 128, 3), 255, np.uint8),
        np.broadcast_to(ramp, (64, 128, 3)) * np.array([1, 0, 0], np.uint8),
    ]  # black, white, red ramp
    paths = []
    for i, image in enumerate(images):
        path = folder / f"pano{i}.png"
        Image.fromarray(np.ascontiguousarray(image)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def generator(tiny):
    model, cfg = tiny
    gen = PanoramaGenerator.from_model(model, cfg)
    gen.options = OPTIONS
    return gen


QUERIES = ["Describe the panorama.", "What is on the left?", "Is there a red cube near the water on the right side?"]


def test_prompt_batch_is_left_padded_with_one_placeholder_each(generator, panoramas):
    batch = generator.prepare(panoramas, QUERIES)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert batch["pixel_values"].shape[:2] == (3, len(batch["geometries"]))
    assert (mask[:, -1] == 1).all() and (mask[:, 0] == 0).any()  # left padding
    assert ((ids == generator.formatter.vision_token_id).sum(dim=1) == 1).all()
    for row, m, q in zip(ids, mask, QUERIES):
        assert row[m.bool()].tolist() == generator.formatter.encode_prompt(q)


def test_cached_and_uncached_generation_give_the_same_tokens(generator, panoramas):
    cached = generator.generate_ids(panoramas, QUERIES)
    uncached = generator.generate_ids(panoramas, QUERIES, use_cache=False)
    assert cached == uncached
    assert any(len(t) > 0 for t in cached)


def test_batch_equals_one_by_one(generator, panoramas):
    batched = generator.generate_ids(panoramas, QUERIES)
    single = [generator.generate_ids([p], [q])[0] for p, q in zip(panoramas, QUERIES)]
    assert batched == single
    assert len({tuple(t) for t in batched}) > 1 and all(len(t) > 0 for t in batched)
    # the image matters: the same query on different panoramas does not give one answer for all
    same_query = generator.generate_ids(panoramas, [QUERIES[0]] * 3)
    assert len({tuple(t) for t in same_query}) > 1


def test_streaming_yields_the_same_text(generator, panoramas):
    pieces = list(generator.stream(panoramas[0], QUERIES[1]))
    assert "".join(pieces).strip() == generator(panoramas[0], QUERIES[1])


def test_sampling_is_an_option(generator, panoramas):
    torch.manual_seed(1)
    a = generator.generate_ids(panoramas[:1], QUERIES[:1], do_sample=True, temperature=1.5, max_new_tokens=6)
    assert len(a[0]) <= 6


def test_the_generator_protocol_usage_and_description(generator, panoramas):
    assert isinstance(generator, AnswerGenerator)
    ids = generator.generate_ids(panoramas[:1], QUERIES[:1])[0]
    assert generator.decode(ids) == generator(panoramas[0], QUERIES[0])
    assert generator.prompt_tokens(QUERIES[0]) == len(generator.formatter.encode_prompt(QUERIES[0]))
    geometries = generator.views.geometries
    assert generator.describe() == {
        "device": "cpu",
        "views": len(geometries),
        "view_kinds": sorted({g.kind for g in geometries}),
        "decoding": asdict(OPTIONS),
    }
    with pytest.raises(TypeError, match="max_tokens"):
        generator.generate_ids(panoramas[:1], QUERIES[:1], max_tokens=3)  # not a DecodingOptions field


def test_saved_model_and_run_folder_load_to_the_same_answers(tiny, generator, panoramas, tmp_path):
    from cora.config import save_config
    from cora.training.checkpoint import save_checkpoint, trainable_state_dict
    from cora.training.state import StageState

    model, cfg = tiny
    expected = generator.generate_ids(panoramas[:2], QUERIES[:2])

    model.save_pretrained(str(tmp_path / "saved"))
    loaded = PanoramaGenerator.from_run(tmp_path / "saved", device="cpu")
    loaded.options = OPTIONS
    assert loaded.generate_ids(panoramas[:2], QUERIES[:2]) == expected

    # a run folder as `cora train` leaves it: config + stage_state.json + per-stage trainable weights
    run = tmp_path / "run"
    save_config(cfg, run / "config.yaml")
    state = StageState(cfg.experiment.name, "digest", list(cfg.training.stages))
    for stage in cfg.training.stages:
        model.set_stage(cfg.training.stage_configs[stage])
        save_checkpoint(run / f"{stage}.ckpt", {"stage": stage, "trainable": trainable_state_dict(model)})
        state.mark_completed(stage, f"{stage}.ckpt", {}, {})
    state.save(run)
    from cora.training.runner import load_run_model

    with pytest.raises(RunLoadError, match="no exported model"):
        PanoramaGenerator.from_run(run, device="cpu")
    from_run = PanoramaGenerator.from_run(run, device="cpu", run_loader=load_run_model)
    from_run.options = OPTIONS
    assert from_run.generate_ids(panoramas[:2], QUERIES[:2]) == expected


def test_generate_cli_json(tiny, generator, panoramas, tmp_path, capsys):
    from cora.cli.main import main

    model, _ = tiny
    saved = tmp_path / "saved"
    model.save_pretrained(str(saved))
    config = tmp_path / "gen.yaml"
    config.write_text(f"extends: {saved / 'config.yaml'}\nevaluation:\n  max_new_tokens: 8\n")
    argv = [
        "generate",
        "--checkpoint",
        str(saved),
        "--image",
        panoramas[0],
        "--query",
        QUERIES[0],
        "--query",
        QUERIES[1],
        "--json",
        "--config",
        str(config),
    ]
    assert main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["answer"] for r in rows] == generator.generate([panoramas[0]] * 2, QUERIES[:2])
    # the two queries about one file shared its views, and match separate calls
    assert [r["answer"] for r in rows] == [generator(panoramas[0], q) for q in QUERIES[:2]]
    argv = [
        "generate",
        "--checkpoint",
        str(saved),
        "--image",
        panoramas[1],
        "--query",
        QUERIES[2],
        "--stream",
        "--config",
        str(config),
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == generator(panoramas[1], QUERIES[2])
    assert main(["generate", "--checkpoint", str(tmp_path), "--image", panoramas[0], "--query", "q"]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_eval_checkpoint_cli_writes_and_resumes(tiny, generator, panoramas, tmp_path, capsys):
    import csv
    import shutil

    from cora.cli.main import main

    if shutil.which("java") is None:
        pytest.skip("java not installed")
    model, _ = tiny
    saved = tmp_path / "saved"
    model.save_pretrained(str(saved))
    config = tmp_path / "eval.yaml"
    config.write_text(
        f"extends: {saved / 'config.yaml'}\nevaluation:\n  max_new_tokens: 8\n  batch_size: 2\n"
        "  flush_every: 1\n  metrics: [bleu4, rouge_l]\n"
    )
    test_csv = tmp_path / "test.csv"
    rows = [(p, QUERIES[0], f"reference {i}") for i, p in enumerate(panoramas)] + [(panoramas[0], QUERIES[0], "more")]
    with open(test_csv, "w", newline="") as handle:
        csv.writer(handle).writerows([("url", "query", "annotation"), *rows])
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(saved), "--test-csv", str(test_csv), "--out", str(out), "--config", str(config)]
    assert main(argv) == 0
    assert "BLEU-4" in capsys.readouterr().out
    first = (out / "predictions.csv").read_text()
    with open(out / "predictions.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 4  # one row per reference; pano0 has two
    expected = generator.generate(panoramas, [QUERIES[0]] * 3)
    assert [r["prediction"] for r in written] == [expected[0], expected[0], expected[1], expected[2]]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_samples"] == 3 and metrics["n_references"] == 4
    assert main(argv) == 0  # resumes: nothing left to predict, same file
    assert (out / "predictions.csv").read_text() == first
