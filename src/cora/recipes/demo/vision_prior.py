"""The vision prior: a short supervised pretraining of the kit's random vision tower on SynthPano views.

Real CORA starts from a pretrained SigLIP whose features already name what is in view; the
kit's tower is random, and a random tower's features hide a small object under the changing
sky and floor. A few hundred steps teach the tower what pretraining gives a real one: every
view of a *training* panorama is labelled with the colours and shapes of the objects inside
its field of view (from the SynthPano JSONL: each object's yaw), and the tower plus a linear
head learn them as multi-label targets. Only the tower is saved back (the head is dropped);
``<kit>/vision_prior.json`` records what was trained so an up-to-date prior is skipped, and a
prior always starts from the kit's base tower (:mod:`cora.recipes.demo.kit_prior`). The vision and
the blind run of the demo start from the same tower.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel

from cora.config.sections.demo import VisionPriorConfig
from cora.model.vision import build_vision_backbone
from cora.processors.geometry import ViewGeometry, erp_lonlat_to_pixel, wrap_deg
from cora.processors.views import PanoramaViews
from cora.recipes.demo.kit_prior import KitPrior
from cora.training.schedule import warmup_cosine

logger = logging.getLogger(__name__)


def view_labels(objects: Sequence[dict], geometries: Sequence[ViewGeometry], vocab: Sequence[str]) -> torch.Tensor:
    """``[V, len(vocab)]`` multi-hot: the colour and shape of every object inside each view.

    An object is inside a perspective tile when its yaw is within half the tile's horizontal
    FOV of the tile's yaw; every object is inside a global view or a crop covering 360°.
    """
    labels = torch.zeros(len(geometries), len(vocab))
    for v, geom in enumerate(geometries):
        for obj in objects:
            offset = abs(float(wrap_deg(obj["yaw_deg"] - geom.yaw_deg)))
            if geom.kind == "global" or offset < geom.hfov_deg / 2:
                for word in (obj["colour"], obj["shape"]):
                    labels[v, vocab.index(word)] = 1.0
    return labels


def patch_labels(
    objects: Sequence[dict],
    geometries: Sequence[ViewGeometry],
    grid: int,
    vocab: Sequence[str],
    erp_size: tuple[int, int],
    sub: int = 3,
) -> torch.Tensor:
    """``[V, grid*grid, len(vocab)]`` multi-hot per ViT patch: the colour and shape of every object
    whose ERP box (``bbox_2d``, ``x1 > x2`` across the seam) meets the patch.

    A patch meets a box when any of ``sub × sub`` points spread over it falls inside the box,
    so an object smaller than a patch still labels the patch it sits in.
    """
    width, height = erp_size
    labels = torch.zeros(len(geometries), grid * grid, len(vocab))
    for v, geom in enumerate(geometries):
        lon, lat = geom.grid_lonlat(grid * sub, grid * sub)
        x, y = erp_lonlat_to_pixel(lon, lat, width, height)
        x = x % width
        for obj in objects:
            x1, y1, x2, y2 = obj["bbox_2d"]
            in_x = (x >= x1) & (x <= x2) if x1 <= x2 else (x >= x1) | (x <= x2)
            inside = in_x & (y >= y1) & (y <= y2)  # [grid*sub, grid*sub]
            hit = inside.reshape(grid, sub, grid, sub).any(axis=(1, 3)).reshape(-1)
            for word in (obj["colour"], obj["shape"]):
                labels[v, torch.from_numpy(hit), vocab.index(word)] = 1.0
    return labels


SynthRow = tuple[Path, list[dict], tuple[int, int]]


def read_synth_jsonl(path: str | Path) -> list[SynthRow]:
    """``(image path, objects, (width, height))`` per row of a SynthPano JSONL; a row without the
    ERP size or an object without yaw/colour/shape/box is an error naming the file and line (this
    prior needs SynthPano's scene annotations)."""
    path = Path(path)
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        objects = row.get("objects", [])
        for obj in objects:
            missing = [k for k in ("yaw_deg", "colour", "shape", "bbox_2d") if k not in obj]
            if missing:
                raise ValueError(f"{path}:{line_no}: objects need {missing} for the vision prior (SynthPano JSONL)")
        if not isinstance(row.get("width"), int) or not isinstance(row.get("height"), int):
            raise ValueError(f"{path}:{line_no}: the row needs the ERP's integer width and height")
        rows.append((path.parent / row["images"][0], objects, (row["width"], row["height"])))
    if not rows:
        raise ValueError(f"{path}: no rows for the vision prior")
    return rows


def _prior(
    vision_dir: str | Path,
    rows: Sequence[SynthRow],
    cfg: VisionPriorConfig,
    seed: int,
    geometries: Sequence[ViewGeometry],
) -> KitPrior:
    payload = json.dumps(
        {
            "rows": [[str(p), objs, size] for p, objs, size in rows],
            "cfg": cfg.model_dump(mode="json"),
            "seed": seed,
            "views": [g.to_dict() for g in geometries],
        },
        sort_keys=True,
        default=str,
    )
    return KitPrior(Path(vision_dir), "vision_prior.json", hashlib.sha256(payload.encode()).hexdigest()[:16])


@dataclass(frozen=True)
class _Tower:
    """The tower being trained and its linear label head (dropped after training)."""

    backbone: Any
    head: nn.Linear
    target: str

    @classmethod
    def build(cls, vision_dir: str | Path, n_labels: int, target: str) -> _Tower:
        # The model's own input path: [0, 1] pixels, the tower's normalisation, patch tokens out.
        backbone = build_vision_backbone(str(vision_dir), dtype=torch.float32)
        backbone.set_trainable_blocks(-1)
        return cls(backbone, nn.Linear(backbone.hidden_size, n_labels), target)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(pixels)  # [B, P, hidden]
        # patch: every patch token names what it shows (local features, as a real SigLIP's are);
        # view: the mean over patches names what the whole view shows.
        return self.head(tokens) if self.target == "patch" else self.head(tokens.mean(1))


def _labels(
    rows: Sequence[SynthRow], geometries: Sequence[ViewGeometry], grid: int, vocab: Sequence[str], target: str
) -> torch.Tensor:
    """Every view's labels, in the order of the pixels: ``[N*V, P, K]`` (patch) or ``[N*V, K]`` (view)."""
    if target == "patch":
        return torch.cat([patch_labels(objs, geometries, grid, vocab, size) for _, objs, size in rows])
    return torch.cat([view_labels(objs, geometries, vocab) for _, objs, _ in rows])


@torch.no_grad()
def _balanced_accuracy(tower: _Tower, pixels: torch.Tensor, labels: torch.Tensor, val: torch.Tensor) -> float:
    """Balanced accuracy ((TPR + TNR) / 2) of the labels: most labels are 0, plain accuracy hides misses."""
    tower.backbone.eval()
    pred = torch.cat([tower.logits(pixels[val[i : i + 256]]) > 0 for i in range(0, len(val), 256)])
    truth = labels[val].bool()
    tower.backbone.train()
    tpr = (pred & truth).sum().item() / max(1, truth.sum().item())
    tnr = (~pred & ~truth).sum().item() / max(1, (~truth).sum().item())
    return (tpr + tnr) / 2


def _fit(
    tower: _Tower, pixels: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, cfg: VisionPriorConfig
) -> float:
    """Train tower and head on the ``train`` views for ``cfg.steps`` steps; returns the seconds taken."""
    params = [p for p in tower.backbone.parameters() if p.requires_grad] + list(tower.head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_ratio * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg.steps, warmup))
    # Objects are small: almost every patch label is 0. Weighting positives by the negatives /
    # positives ratio (per label, capped) keeps the tower from learning "nothing anywhere".
    pos_weight = None
    if cfg.target == "patch":
        flat = labels[train].flatten(0, -2)
        pos_weight = ((len(flat) - flat.sum(0)) / flat.sum(0).clamp(min=1)).clamp(1.0, 20.0)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        idx = train[torch.randint(len(train), (cfg.batch_size,))]
        loss = nn.functional.binary_cross_entropy_with_logits(
            tower.logits(pixels[idx]), labels[idx], pos_weight=pos_weight
        )
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _save_tower(vision_dir: str | Path, backbone: Any, prior: KitPrior, summary: dict[str, Any]) -> None:
    # The backbone dropped SigLIP's unused pooling head from its tower; save through a full copy so
    # the folder keeps every weight it had. Only the weights file changes (written, then renamed).
    full = AutoModel.from_pretrained(vision_dir, dtype=torch.float32)
    missing, _ = full.load_state_dict(backbone.tower.state_dict(), strict=False)
    if any(".head." not in f".{k}" for k in missing):
        raise RuntimeError(f"vision prior: trained weights do not cover the tower: {missing[:5]}")
    prior.save(full, summary)


def train_vision_prior(
    vision_dir: str | Path,
    jsonl: str | Path,
    views: PanoramaViews,
    cfg: VisionPriorConfig,
    seed: int = 0,
    force: bool = False,
) -> dict[str, Any]:
    """Pretrain the tower in ``vision_dir`` on the ``views`` of ``jsonl``'s panoramas and save it back.

    Returns a summary: ``skipped``, ``steps``, ``seconds``, and on 10% held-out views the
    balanced accuracy of the labels ``before``/``after``.
    """
    rows = read_synth_jsonl(jsonl)
    geometries = views.geometries
    prior = _prior(vision_dir, rows, cfg, seed, geometries)
    if not force and prior.status() == "current":
        logger.info("vision prior in %s is up to date", vision_dir)
        return prior.summary() | {"skipped": True, "status": "current"}
    prior.start_from_base()
    torch.manual_seed(seed)
    vocab = sorted({w for _, objs, _ in rows for o in objs for w in (o["colour"], o["shape"])})
    pixels = torch.cat([views(path).pixels for path, _, _ in rows])  # [N*V, 3, S, S]
    order = torch.randperm(len(pixels))
    n_val = max(1, len(order) // 10)
    val, train = order[:n_val], order[n_val:]
    tower = _Tower.build(vision_dir, len(vocab), cfg.target)
    labels = _labels(rows, geometries, tower.backbone.grid, vocab, cfg.target)
    before = _balanced_accuracy(tower, pixels, labels, val)
    seconds = _fit(tower, pixels, labels, train, cfg)
    after = _balanced_accuracy(tower, pixels, labels, val)
    summary = {
        "skipped": False,
        "steps": cfg.steps,
        "views": len(train),
        "labels": vocab,
        "seconds": round(seconds, 1),
        "heldout_balanced_acc_before": round(before, 4),
        "heldout_balanced_acc_after": round(after, 4),
    }
    _save_tower(vision_dir, tower.backbone, prior, summary)
    logger.info(
        "vision prior (%s labels): held-out balanced accuracy %.3f → %.3f in %d steps (%.1fs)",
        cfg.target,
        before,
        after,
        cfg.steps,
        seconds,
    )
    return summary
