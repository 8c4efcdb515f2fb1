"""A small stand-in for the PanoramaVLM and the data collate (same contracts), for fast runner tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from cora.processors.geometry import global_view, perspective_view
from cora.training.module import StageData

SIZE, PATCH, DV, LATENT, VOCAB = 16, 4, 12, 8, 16
GEOMS = [global_view(SIZE, 0)] + [perspective_view(90.0 * i, 0, 120, SIZE, i + 1) for i in range(4)]


@dataclass
class Out:
    loss: torch.Tensor | None
    logits: torch.Tensor | None
    overlap_features: torch.Tensor | None
    tile_geometries: list
    resampler_features: torch.Tensor | None = None


class StandinVLM(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.patch = nn.Linear(3 * PATCH * PATCH, DV)
        self.blocks = nn.ModuleList([nn.Linear(DV, DV) for _ in range(2)])
        self.resampler = nn.Sequential(nn.Linear(DV, LATENT), nn.Dropout(dropout))
        self.vicreg_projector = nn.Sequential(nn.Linear(LATENT, LATENT), nn.GELU(), nn.Linear(LATENT, LATENT))
        self.panorama_projector = nn.Linear(LATENT, 16)
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, VOCAB)
        self.lora: nn.ParameterDict | None = None
        self.tokenizer = None
        self.modes: dict[str, str] = {}

    def enable_gradient_checkpointing(self) -> None:
        self.checkpointing = True

    def set_stage(self, cfg) -> list[dict]:
        self.modes = {
            "resampler": cfg.resampler,
            "vicreg_projector": cfg.vicreg_projector,
            "panorama_projector": cfg.panorama_projector,
            "language_model": cfg.language_model,
        }
        for p in self.parameters():
            p.requires_grad_(False)
        n = len(self.blocks) if cfg.vision_trainable_blocks == -1 else cfg.vision_trainable_blocks
        for block in list(self.blocks)[len(self.blocks) - n :] if n else []:
            block.requires_grad_(True)
        for name in ("resampler", "vicreg_projector", "panorama_projector"):
            getattr(self, name).requires_grad_(self.modes[name] == "full")
        if cfg.language_model == "lora" and self.lora is None:
            self.lora = nn.ParameterDict(
                {"a": nn.Parameter(torch.randn(16, 2) * 0.1), "b": nn.Parameter(torch.zeros(2, 16))}
            )
        if cfg.language_model == "full":
            self.embed.requires_grad_(True)
            self.head.requires_grad_(True)
        return [{"component": k, "mode": v} for k, v in self.modes.items()]

    def forward(self, pixel_values, geometries, input_ids=None, attention_mask=None, labels=None) -> Out:
        b, v = pixel_values.shape[:2]
        g = SIZE // PATCH
        x = pixel_values.reshape(b, v, 3, g, PATCH, g, PATCH).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, v, g, g, -1)
        x = self.patch(x)
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        z = self.resampler(x)  # [B, V, g, g, LATENT]
        tiles = [i for i, geo in enumerate(geometries) if geo.kind != "global"]
        overlap = None
        if self.modes.get("vicreg_projector", "unused") != "unused":
            overlap = self.vicreg_projector(z[:, tiles])
        loss = logits = None
        if input_ids is not None and self.modes.get("language_model") != "unused":
            vis = self.panorama_projector(z).mean(dim=(1, 2, 3))  # [B, 16]
            h = self.embed(input_ids) + vis[:, None]
            if self.lora is not None:
                h = h + h @ self.lora["a"] @ self.lora["b"]
            logits = self.head(h)
            if labels is not None:
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=-100)
        return Out(loss, logits, overlap, [geometries[i] for i in tiles])


class StandinData(Dataset):
    """Images whose mean brightness decides the answer token: text needs vision."""

    def __init__(self, n: int, seed: int = 0, text: bool = True) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.pixels = torch.rand(n, len(GEOMS), 3, SIZE, SIZE, generator=gen)
        self.answers = (self.pixels.mean(dim=(1, 2, 3, 4)) > 0.5).long() + 3
        self.text = text

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> dict:
        item = {"pixel_values": self.pixels[i]}
        if self.text:
            ids = torch.tensor([1, 2, int(self.answers[i]), 0])
            item |= {"input_ids": ids, "labels": torch.tensor([-100, -100, int(self.answers[i]), 0])}
        return item


def collate(items: list[dict]) -> dict:
    batch = {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        "geometries": GEOMS,
        "meta": [{} for _ in items],
    }
    if "input_ids" in items[0]:
        batch["input_ids"] = torch.stack([it["input_ids"] for it in items])
        batch["attention_mask"] = torch.ones_like(batch["input_ids"])
        batch["labels"] = torch.stack([it["labels"] for it in items])
    return batch


def standin_model(config) -> StandinVLM:
    return StandinVLM()


def standin_data(config, stage, stage_cfg, tokenizer) -> StageData:
    text = stage != "vision"
    return StageData(StandinData(24, seed=0, text=text), StandinData(8, seed=1, text=text), collate)


def standin_config(tmp_path, **training):
    """A 3-stage config for the stand-in: a handful of steps each, CPU, fp32."""
    from cora.config import CoraConfig

    small = {"batch_size": 4, "max_steps": 6, "warmup_ratio": 0.2, "loss": {"overlap_columns": 1}}
    data = {
        "experiment": {"name": "standin", "output_dir": str(tmp_path / "runs"), "seed": 7},
        "training": {
            "stage_configs": {
                "vision": dict(small, lr=1e-2),
                "resampler": dict(small, accumulate_grad_batches=2),
                "finetune": dict(small, lr=1e-2),
            },
            "accelerator": "cpu",
            "devices": 1,
            "loggers": ["csv"],
            "progress_bar": False,
            "checkpoint_every_n_steps": 2,
            "log_every_n_steps": 1,
        }
        | training,
        "data": {"num_workers": 0},
    }
    return CoraConfig.model_validate(data)
