"""The model card's recipe table names what each stage trained, read from the stage's component modes."""

from __future__ import annotations

from cora.config import load_config
from cora.recipes.card import model_card
from tests.ddp_util import ROOT


def test_the_recipe_table_names_each_stage_s_trained_components():
    config = load_config(ROOT / "configs" / "tiny.yaml")
    config.training.stage_configs["vision"].vision_trainable_blocks = 2
    card = model_card(config, {"finetune": {"samples": 8, "val": {"val_loss": 0.5}}}, merged=True)
    rows = {line.split("|")[1].strip(): line for line in card.splitlines() if line.startswith("| ")}
    assert "vision last 2 blocks" in rows["vision"] and "resampler full" in rows["vision"]
    assert "language_model lora" in rows["finetune"] and "val_loss 0.5" in rows["finetune"]
    assert "vision" not in rows["finetune"].split("|")[3]  # frozen there
