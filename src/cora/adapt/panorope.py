"""PanoRoPE: rotary position ids that know each tile's yaw.

All perspective tiles of a panorama are laid on one cylindrical *canvas* whose columns are
longitude: a tile at yaw ψ with a ``w``-column token grid over ``hfov`` degrees starts at canvas
column ``round((ψ - ψ₀) · w / hfov)`` and the canvas is ``P = 360 · w / hfov`` columns around, so

* overlapping columns of adjacent tiles get the *same* position (tile 1's first half = tile 0's
  second half at 50 % overlap), and
* the canvas wraps at 360°: tile 7 (yaw 315°) continues into tile 0's columns (mod ``P``).

Pitch moves a tile down the canvas (``round((pitch_max - pitch) · h / vfov)`` rows).

``mrope`` (Qwen2.5-VL / Qwen3-VL): a tile token at canvas (row r, column c) gets ``(t, h, w) =
(a, a + r, a + c)`` with ``a`` the position where the first tile starts; text and non-tile images
(the global view, a native ERP) keep Qwen's own scheme.
``1d`` (InternVL, Gemma 3): the same canvas flattened row-major, ``a + r · P + c``: tokens at the
same (row, longitude) share one id, and the tile sequence wraps at 360° the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cora.adapt.families.base import token_runs
from cora.processors.geometry import ViewGeometry


@dataclass(frozen=True)
class CanvasLayout:
    """Where each tile sits on the panorama canvas: ``offsets[i] = (row, column)`` for image ``i`` (tiles only)."""

    offsets: dict[int, tuple[int, int]]
    period: int
    rows: int


def is_tile(geom: ViewGeometry) -> bool:
    return geom.projection == "perspective"


def canvas_layout(geometries: list[ViewGeometry], grids: list[tuple[int, int]]) -> CanvasLayout | None:
    """The canvas of the tiles among ``geometries`` (``grids[i] = (h, w)`` tokens of image ``i``); None if no tile."""
    tiles = [i for i, g in enumerate(geometries) if is_tile(g)]
    if not tiles:
        return None
    shapes = {(grids[i], geometries[i].hfov_deg, geometries[i].vfov_deg) for i in tiles}
    if len(shapes) != 1:
        raise ValueError(f"PanoRoPE needs tiles of one token grid and FOV; got {sorted(shapes)}")
    (h, w), hfov, vfov = shapes.pop()
    cols_per_deg, rows_per_deg = w / hfov, h / vfov
    yaw0 = geometries[tiles[0]].yaw_deg
    top = max(geometries[i].pitch_deg for i in tiles)
    offsets = {
        i: (
            round((top - geometries[i].pitch_deg) * rows_per_deg),
            round(((geometries[i].yaw_deg - yaw0) % 360.0) * cols_per_deg),
        )
        for i in tiles
    }
    period = round(360.0 * cols_per_deg)
    return CanvasLayout(offsets, period, max(r for r, _ in offsets.values()) + h)


def _segments(row: torch.Tensor, image_token_id: int) -> list[tuple[str, int, int]]:
    out, pos = [], 0
    for start, end in token_runs(row, image_token_id):
        if start > pos:
            out.append(("text", pos, start))
        out.append(("image", start, end))
        pos = end
    if pos < len(row):
        out.append(("text", pos, len(row)))
    return out


def mrope_position_ids(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_token_id: int,
    grids: list[tuple[int, int]],
    geometries: list[list[ViewGeometry]],
    panorope: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen M-RoPE ids ``[3, B, T]`` and rope deltas ``[B, 1]``; ``grids`` are the merged ``(h, w)`` of all images
    of the batch in order. With ``panorope=False`` this is Qwen's own ``get_rope_index`` for images."""
    batch, length = input_ids.shape
    position_ids = torch.zeros(3, batch, length, dtype=torch.long)
    deltas = []
    image = 0
    for b in range(batch):
        keep = attention_mask[b].bool()  # left or right padding: pads keep id 0
        row = torch.zeros(3, int(keep.sum()), dtype=torch.long)
        n_images = len(geometries[b])
        sample_grids = grids[image : image + n_images]
        layout = canvas_layout(geometries[b], sample_grids) if panorope else None
        cur, anchor, k = 0, None, 0
        for kind, start, end in _segments(input_ids[b][keep], image_token_id):
            if kind == "text":
                row[:, start:end] = torch.arange(cur, cur + end - start)
                cur += end - start
                continue
            h, w = sample_grids[k]
            rows = torch.arange(h).view(h, 1).expand(h, w).reshape(-1)
            cols = torch.arange(w).view(1, w).expand(h, w).reshape(-1)
            if layout is not None and k in layout.offsets:
                anchor = cur if anchor is None else anchor
                r0, c0 = layout.offsets[k]
                ids = torch.stack(
                    [torch.full_like(rows, anchor), anchor + r0 + rows, anchor + (c0 + cols) % layout.period]
                )
                cur = max(cur, anchor + max(layout.rows, layout.period))
            else:
                ids = torch.stack([torch.full_like(rows, cur), cur + rows, cur + cols])
                cur += max(h, w)
            row[:, start:end] = ids
            k += 1
        if k != n_images:
            raise ValueError(f"sample {b}: {k} image token runs for {n_images} geometries")
        image += n_images
        position_ids[:, b, keep] = row
        deltas.append(int(row.max()) + 1 - row.shape[1])
    return position_ids, torch.tensor(deltas).view(batch, 1)


def flat_position_ids(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_token_id: int,
    grids: list[tuple[int, int]],
    geometries: list[list[ViewGeometry]],
    panorope: bool = True,
) -> torch.Tensor:
    """1-D RoPE ids ``[B, T]``: tile tokens on the row-major canvas, everything else sequential.

    ``grids`` are the ``(h, w)`` token grids of all images of the batch in order.
    """
    batch, length = input_ids.shape
    position_ids = torch.zeros(batch, length, dtype=torch.long)
    image = 0
    for b in range(batch):
        keep = attention_mask[b].bool()
        row = torch.zeros(int(keep.sum()), dtype=torch.long)
        n_images = len(geometries[b])
        sample_grids = grids[image : image + n_images]
        layout = canvas_layout(geometries[b], sample_grids) if panorope else None
        cur, anchor, k = 0, None, 0
        for kind, start, end in _segments(input_ids[b][keep], image_token_id):
            n = end - start
            if kind == "image" and layout is not None and k in layout.offsets:
                anchor = cur if anchor is None else anchor
                h, w = sample_grids[k]
                r0, c0 = layout.offsets[k]
                rows = torch.arange(h).view(h, 1).expand(h, w).reshape(-1)
                cols = torch.arange(w).view(1, w).expand(h, w).reshape(-1)
                row[start:end] = anchor + (r0 + rows) * layout.period + (c0 + cols) % layout.period
                cur = max(cur, anchor + layout.rows * layout.period)
            else:
                row[start:end] = torch.arange(cur, cur + n)
                cur += n
            k += kind == "image"
        if k != n_images:
            raise ValueError(f"sample {b}: {k} image token runs for {n_images} geometries")
        image += n_images
        position_ids[b, keep] = row
    return position_ids
