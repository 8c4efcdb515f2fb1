"""The model card (``README.md``) of an exported run: base model(s), data, training recipe, results, and how
to load it — in the Hugging Face model-card format (YAML metadata, then Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cora.config import CoraConfig
from cora.model.stages import COMPONENTS, StageModes
from cora.training.state import StageState
from cora.utils.io import atomic_write_text


def _base_models(config: CoraConfig) -> list[str]:
    if config.adapt is not None:
        return [config.adapt.model_name or f"{config.adapt.family} (tiny random model)"]
    return [config.models.vision_name, config.models.language_model_name]


def _recipe_rows(config: CoraConfig, summaries: dict[str, Any]) -> list[str]:
    rows = ["| stage | kind | trained | steps | batch | lr | samples | held-out |", "|---|---|---|---|---|---|---|---|"]
    for name in config.training.stages:
        stage = config.training.stage_configs[name]
        modes = StageModes.of(stage)
        trained = (
            ", ".join(f"{c} {m}" for c in COMPONENTS if (m := getattr(modes, c)) not in ("frozen", "unused")) or "—"
        )
        done = summaries.get(name, {})
        held_out = ", ".join(f"{k} {v:.4g}" for k, v in (done.get("val") or {}).items()) or "—"
        rows.append(
            f"| {name} | {stage.kind} | {trained} | {stage.max_steps} | {stage.batch_size} | {stage.lr:g} "
            f"| {done.get('samples', '—')} | {held_out} |"
        )
    return rows


def model_card(config: CoraConfig, summaries: dict[str, Any], merged: bool) -> str:
    """The card's text for a run with ``config`` and its stage ``summaries`` (``stage_state.json``)."""
    bases = _base_models(config)
    meta = {
        "library_name": "transformers" if config.adapt is not None else "cora",
        "pipeline_tag": "image-text-to-text",
        "base_model": bases,
        "tags": ["cora", "panorama", "360", "equirectangular", "vision-language"],
    }
    data = config.data
    files = {"train": data.train, "validation": data.val, "test": data.test}
    loading = (
        "```python\nimport cora  # registers model_type 'cora' with transformers\n"
        "from transformers import AutoModelForImageTextToText, AutoProcessor\n\n"
        'model = AutoModelForImageTextToText.from_pretrained("PATH")\n'
        'processor = AutoProcessor.from_pretrained("PATH")\n'
        'inputs = processor(["pano.jpg"], ["What is on the left?"])\n'
        "print(processor.batch_decode(model.generate(**inputs, max_new_tokens=64)))\n```"
        if config.adapt is None
        else f"Load with the `{config.adapt.family}` family's model class and `AutoProcessor` "
        + ("(weights merged, no PEFT needed)." if merged else "plus this adapter (`cora.adapt.recipes.load_adapter`).")
    )
    lines = [
        f"# {config.experiment.name}",
        "",
        "A CORA model: it answers questions about 360° equirectangular panoramas, cut into overlapping views "
        f"({config.image_processing.crop_strategy}), encoded, aligned across their overlaps and stitched by yaw "
        "before the language model reads them.",
        "",
        "## Base models",
        *[f"- `{b}`" for b in bases],
        "",
        "## Data",
        *[f"- {split}: `{path}`" for split, path in files.items() if path],
        "",
        "## Training recipe",
        *_recipe_rows(config, summaries),
        "",
        f"Seed {config.experiment.seed}. Exported {'with every weight (LoRA merged)' if merged else 'as an adapter'}.",
        "",
        "## Use",
        loading,
        "",
    ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n\n" + "\n".join(lines)


def write_model_card(out: Path, config: CoraConfig, run_dir: Path, merged: bool) -> Path:
    state = StageState.load(run_dir)
    summaries = state.summaries if state is not None else {}
    atomic_write_text(out / "README.md", model_card(config, summaries, merged))
    return out / "README.md"
