"""The runner's default data: the data helper's DataModule of a stage, as :class:`StageData`."""

from __future__ import annotations

from typing import Any

from cora.config import CoraConfig
from cora.config.sections.training import StageConfig
from cora.training.module import StageData


def build_stage_data(config: CoraConfig, stage: str, stage_cfg: StageConfig, tokenizer: Any) -> StageData:
    """Stage 1 (LLM unused) reads images only; the other stages read panorama + query + answer."""
    from cora.data.datamodule import build_datamodule
    from cora.data.dataset import read_bad_rows
    from cora.processors.text import ChatFormatter

    if stage_cfg.language_model == "unused":
        module = build_datamodule(config, tokenizer, stage)
        refused = read_bad_rows(module.train, module.val)
        return StageData(module.train, module.val, module.collate, read_bad_rows=refused)
    formatter = ChatFormatter(
        tokenizer, system_prompt=config.data.system_prompt, vision_token=config.models.vision_token
    )
    module = build_datamodule(config, tokenizer, stage, formatter=formatter)
    stops = tuple(formatter.stop_token_ids)
    return StageData(module.train, module.val, module.collate, stops, read_bad_rows(module.train, module.val))
