"""PanoRoPE position ids: hand-computed values on a small geometry, and Qwen's own ids when switched off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cora.adapt.encode import encode_batch
from cora.adapt.families import get_family
from cora.adapt.inputs import PanoramaInputs
from cora.adapt.panorope import canvas_layout, flat_position_ids, mrope_position_ids
from cora.config.schema import ImageProcessingConfig
from cora.processors.geometry import global_view, perspective_view

IMG, TXT = 9, 1
# text text [global 1×2] text [tile yaw 0] text [tile yaw 45] text [tile yaw 315] text
IDS = torch.tensor([[TXT, TXT, IMG, IMG, TXT, IMG, IMG, TXT, IMG, IMG, TXT, IMG, IMG, TXT]])
GEOMS = [
    [
        global_view(64),
        perspective_view(0, 0, 90, 64, 1),
        perspective_view(45, 0, 90, 64, 2),
        perspective_view(315, 0, 90, 64, 3),
    ]
]
GRIDS = [(1, 2)] * 4  # 2 token columns over 90°: one column per 45°, the canvas is 8 columns around


def test_canvas_layout_by_hand():
    layout = canvas_layout(GEOMS[0], GRIDS)
    assert layout.period == 8
    assert layout.offsets == {1: (0, 0), 2: (0, 1), 3: (0, 7)}


def test_mrope_ids_by_hand():
    ids, deltas = mrope_position_ids(IDS, torch.ones_like(IDS), IMG, GRIDS, GEOMS)
    # global view: Qwen's scheme from position 2; tiles anchored at 5, width = 5 + canvas column (mod 8)
    t = [0, 1, 2, 2, 4, 5, 5, 13, 5, 5, 14, 5, 5, 15]
    h = [0, 1, 2, 2, 4, 5, 5, 13, 5, 5, 14, 5, 5, 15]
    w = [0, 1, 2, 3, 4, 5, 6, 13, 6, 7, 14, 12, 5, 15]
    assert ids[:, 0].tolist() == [t, h, w]
    assert deltas.tolist() == [[15 + 1 - 14]]
    # overlap shares positions: tile 45°'s first column = tile 0°'s second; tile 315°'s second wraps to tile 0°'s first
    assert w[8] == w[6] and w[12] == w[5]


def test_mrope_without_panorope_is_sequential():
    ids, _ = mrope_position_ids(IDS, torch.ones_like(IDS), IMG, GRIDS, GEOMS, panorope=False)
    assert ids[2, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]


def test_flat_ids_by_hand():
    ids_tiles = torch.tensor([[TXT, IMG, IMG, TXT, IMG, IMG, IMG, IMG, TXT, IMG, IMG, IMG, IMG, TXT]])
    geoms = [[global_view(64), perspective_view(0, 0, 90, 64, 1), perspective_view(45, 0, 90, 64, 2)]]
    ids = flat_position_ids(ids_tiles, torch.ones_like(ids_tiles), IMG, [(1, 2), (2, 2), (2, 2)], geoms)
    # 2×2-token tiles over 90°: the canvas is 8 columns around, row-major. text 0 | global 1, 2 | text 3 |
    # tile 0° at anchor 4: (r, c) -> 4 + 8r + c | text 4 + 2·8 = 20 | tile 45° one column right | text 21
    assert ids[0].tolist() == [0, 1, 2, 3, 4, 5, 12, 13, 20, 5, 6, 13, 14, 21]


def test_flat_ids_wrap_at_360():
    ids_tiles = torch.tensor([[TXT, IMG, IMG, TXT, IMG, IMG, TXT]])
    geoms = [[perspective_view(0, 0, 90, 64, 0), perspective_view(315, 0, 90, 64, 1)]]
    ids = flat_position_ids(ids_tiles, torch.ones_like(ids_tiles), IMG, [(1, 2), (1, 2)], geoms)
    # 1×2 grids, canvas 8 around: tile 315° sits at columns 7, 8 ≡ 0, its right column shares tile 0°'s left id
    assert ids[0].tolist() == [0, 1, 2, 9, 8, 1, 10]


def test_pitch_moves_tiles_down_the_canvas():
    geoms = [
        perspective_view(0, 45, 90, 64, 0),
        perspective_view(0, -45, 90, 64, 1),
        perspective_view(45, -45, 90, 64, 2),
    ]
    layout = canvas_layout(geoms, [(2, 2)] * 3)
    # 2 rows per 90°: the tile looking 45° down starts 2 rows below the one looking 45° up
    assert layout.offsets == {0: (0, 0), 1: (2, 0), 2: (2, 1)} and layout.rows == 4 and layout.period == 8
    ids = torch.tensor([[TXT] + [IMG] * 4 + [TXT] + [IMG] * 4 + [TXT] + [IMG] * 4 + [TXT]])
    flat = flat_position_ids(ids, torch.ones_like(ids), IMG, [(2, 2)] * 3, [geoms])
    # anchor 1; tile 0: rows 0-1; tile 1: rows 2-3 (+16); tile 2 one column right of tile 1; text after 1 + 4·8
    assert flat[0].tolist() == [0, 1, 2, 9, 10, 33, 17, 18, 25, 26, 34, 18, 19, 26, 27, 35]


def test_mixed_tile_grids_are_refused():
    with pytest.raises(ValueError, match="one token grid and FOV"):
        canvas_layout([perspective_view(0, 0, 90, 64), perspective_view(45, 0, 60, 64)], [(2, 2), (2, 2)])


@pytest.mark.parametrize("name", ["qwen2_5_vl", "qwen3_vl"])
def test_off_matches_the_models_own_rope_index(name):
    family = get_family(name)
    model, processor = family.build_tiny(64)
    erp = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    pano = PanoramaInputs("anyres_e2p", ImageProcessingConfig(image_size=64))(erp)
    batch = encode_batch(family, processor, [pano, pano], ["Where?", "What is behind you?"], ["left", "a cube"])
    inp = batch.inputs
    ref, ref_deltas = model.model.get_rope_index(
        inp["input_ids"],
        mm_token_type_ids=inp["mm_token_type_ids"],
        image_grid_thw=inp["image_grid_thw"],
        attention_mask=inp["attention_mask"],
    )
    grids = [(h // 2, w // 2) for _, h, w in inp["image_grid_thw"].tolist()]
    ours, deltas = mrope_position_ids(
        inp["input_ids"],
        inp["attention_mask"],
        family.image_token_id(processor),
        grids,
        batch.geometries,
        panorope=False,
    )
    mask = inp["attention_mask"].bool()
    assert torch.equal(ours[:, mask], ref[:, mask])
    assert torch.equal(deltas, ref_deltas)
    # With PanoRoPE the 8 tiles (4×4 tokens, 90° FOV, 45° stride) shift by 2 columns each and wrap at 16.
    pano_ids, _ = mrope_position_ids(
        inp["input_ids"], inp["attention_mask"], family.image_token_id(processor), grids, batch.geometries
    )
    image = inp["input_ids"][0] == family.image_token_id(processor)
    width = pano_ids[2, 0][image].view(9, 4, 4)[1:]  # tiles: [8, rows, cols]
    anchor = width[0, 0, 0]
    assert torch.equal(width[:, 0, :] - anchor, torch.tensor([[(2 * k + c) % 16 for c in range(4)] for k in range(8)]))
