"""Sampling views out of an ERP image: maps computed once per geometry set, one remap per pass.

For a list of view geometries and an ERP size, :func:`build_plan` computes where every view
pixel falls in the ERP once and caches it (LRU keyed by geometries, ERP size, filter and
interpolation). Sampling a panorama is then one ``cv2.remap`` over fixed-point maps for all
views that share a source (numpy, uint8), or one ``grid_sample`` batched over views and
panoramas (torch, CPU or CUDA).

Anti-aliasing (``erp_filter="area"``): a 4096-wide ERP is 5× denser than a 256-pixel,
90° tile. Bilinear sampling would skip most ERP pixels (aliasing, like py360convert), so the
ERP is first halved with area averaging (exact 2×2 means, cheap) while it stays at least
as dense as the view at its densest point; ERP-projection views (global, crops) take an
exact area resize to their own density. ``erp_filter="remap"`` samples the full ERP.

Seam: x wraps (``BORDER_WRAP`` for cv2; two wrapped columns padded on each side for torch),
so a view straddling ±180° interpolates across the seam instead of into a black border.
y is clamped (replicated pole rows).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cora.processors.geometry import ViewGeometry, erp_lonlat_to_pixel

Interpolation = str  # "nearest" | "bilinear" | "bicubic"
CV2_INTERP = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
WRAP_PAD = 2  # wrapped columns on each side of the ERP for torch (bicubic reads 2 neighbours)
PLAN_CACHE_SIZE = 32


def density_size(geom: ViewGeometry) -> tuple[float, float]:
    """ERP size ``(w, h)`` whose pixels are as dense as the view's densest pixels.

    A perspective view is densest (in pixels per radian) at its centre: ``focal`` px/rad,
    i.e. an ERP ``2π·focal`` wide. An ERP view spans ``hfov × vfov`` degrees in its pixels.
    """
    if geom.projection == "erp":
        return geom.width * 360.0 / geom.hfov_deg, geom.height * 180.0 / geom.vfov_deg
    focal = (geom.width / 2.0) / math.tan(math.radians(geom.hfov_deg) / 2.0)
    return 2.0 * math.pi * focal, math.pi * focal


@dataclass(frozen=True)
class Source:
    """An image the views sample from: the ERP (``parent`` None) or an area resize of ``parent``."""

    width: int
    height: int
    parent: int | None


@dataclass
class Group:
    """Views sampled together from one source: maps stacked vertically, ``[n*h, w]``."""

    source: int
    views: tuple[int, ...]
    map_x: np.ndarray  # [n*h, w] float32 ERP x at the source's size (wrapped into [-0.5, w-0.5))
    map_y: np.ndarray  # [n*h, w] float32, clamped inside the image
    fixed: tuple[np.ndarray, np.ndarray] | None  # cv2.convertMaps output (None when too wide for int16)
    torch_grids: dict = field(default_factory=dict)  # (device, dtype) -> [1, n*h, w, 2] grid
    identity: bool = False  # one view whose pixels are exactly the source's (a global view after its resize)


@dataclass
class SamplingPlan:
    """Everything needed to sample a fixed view list from ERPs of one size."""

    width: int
    height: int
    view_size: tuple[int, int]  # (h, w) of every view
    sources: list[Source]
    groups: list[Group]
    interpolation: Interpolation
    torch_cache: dict = field(default_factory=dict)  # area-resize matrices per (sizes, device)


def _pyramid(width: int, height: int, need_w: float, need_h: float, sources: list[Source]) -> int:
    """Index of the smallest 2×-halving of the ERP still at least ``need`` in both axes (adds levels)."""
    index = 0
    while True:
        src = sources[index]
        half_w, half_h = src.width // 2, src.height // 2
        if half_w < need_w or half_h < need_h or half_w < 4 or half_h < 2:
            return index
        child = next(
            (i for i, s in enumerate(sources) if s.parent == index and (s.width, s.height) == (half_w, half_h)), None
        )
        if child is None:
            sources.append(Source(half_w, half_h, index))
            child = len(sources) - 1
        index = child


def _source_for(geom: ViewGeometry, sources: list[Source], erp_filter: str) -> int:
    if erp_filter == "remap":
        return 0
    need_w, need_h = density_size(geom)
    base = _pyramid(sources[0].width, sources[0].height, need_w, need_h, sources)
    if geom.projection != "erp":
        return base
    # ERP views (global, crops) are axis-aligned: an exact area resize to their density is alias-free.
    target = (max(1, round(need_w)), max(1, round(need_h)))
    base_size = (sources[base].width, sources[base].height)
    if target == base_size or target[0] > base_size[0] or target[1] > base_size[1]:
        return base
    for i, s in enumerate(sources):
        if (s.width, s.height) == target:
            return i
    sources.append(Source(target[0], target[1], base))
    return len(sources) - 1


def erp_coords(geom: ViewGeometry, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous ERP pixel coordinates ``(x, y)`` of every view pixel centre, ``[h, w]`` float64.

    x is wrapped into ``[-0.5, width - 0.5)`` (the seam sits between column ``width-1`` and 0).
    """
    lon, lat = geom.pixel_lonlat()
    x, y = erp_lonlat_to_pixel(lon, lat, width, height)
    return (x + 0.5) % width - 0.5, y


def _group_maps(geoms: list[ViewGeometry], source: Source, interpolation: Interpolation):
    xs, ys = zip(*(erp_coords(g, source.width, source.height) for g in geoms), strict=True)
    map_x = np.concatenate(xs).astype(np.float32)
    # Clamp y inside the image (replicated pole rows). Bicubic reads one row above: keep it off
    # row 0 so BORDER_WRAP never pulls the opposite pole in.
    low = 1.0 if interpolation == "bicubic" and source.height >= 4 else 0.0
    map_y = np.clip(np.concatenate(ys), low, source.height - 1 - low).astype(np.float32)
    fixed = None
    if source.width < 32000 and source.height < 32000:  # fixed-point maps are int16
        fixed = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2, nninterpolation=interpolation == "nearest")
    return map_x, map_y, fixed


def _is_identity(map_x: np.ndarray, map_y: np.ndarray) -> bool:
    rows, cols = np.indices(map_x.shape)
    return bool(np.abs(map_x - cols).max() < 1e-3 and np.abs(map_y - rows).max() < 1e-3)


@functools.lru_cache(maxsize=PLAN_CACHE_SIZE)
def build_plan(
    geometries: tuple[ViewGeometry, ...],
    width: int,
    height: int,
    erp_filter: str = "area",
    interpolation: Interpolation = "bilinear",
) -> SamplingPlan:
    """The cached sampling plan of ``geometries`` for a ``width × height`` ERP."""
    if interpolation not in CV2_INTERP:
        raise ValueError(f"unknown interpolation {interpolation!r}; valid: {', '.join(CV2_INTERP)}")
    if erp_filter not in ("area", "remap"):
        raise ValueError(f"unknown erp_filter {erp_filter!r}; valid: area, remap")
    if not geometries:
        raise ValueError("no views to sample")
    sizes = {(g.height, g.width) for g in geometries}
    if len(sizes) != 1:
        raise ValueError(f"all views must have the same size to be batched, got {sorted(sizes)}")
    sources = [Source(width, height, None)]
    by_source: dict[int, list[int]] = {}
    for i, g in enumerate(geometries):
        by_source.setdefault(_source_for(g, sources, erp_filter), []).append(i)
    groups = []
    for src, views in by_source.items():
        map_x, map_y, fixed = _group_maps([geometries[i] for i in views], sources[src], interpolation)
        groups.append(Group(src, tuple(views), map_x, map_y, fixed, identity=_is_identity(map_x, map_y)))
    return SamplingPlan(width, height, sizes.pop(), sources, groups, interpolation)


# -- numpy / cv2 -------------------------------------------------------------------------------
def _derive_numpy(erp: np.ndarray, plan: SamplingPlan, needed: set[int]) -> dict[int, np.ndarray]:
    """The ERP and the area-resized sources in ``needed`` (parents come before children)."""
    images: dict[int, np.ndarray] = {0: erp}
    for i in sorted(needed - {0}):
        s = plan.sources[i]
        images[i] = cv2.resize(images[s.parent], (s.width, s.height), interpolation=cv2.INTER_AREA)
    return images


def _ancestors(plan: SamplingPlan, index: int) -> set[int]:
    out = set()
    while index is not None:
        out.add(index)
        index = plan.sources[index].parent
    return out


def sample_numpy(erp: np.ndarray, plan: SamplingPlan) -> np.ndarray:
    """All views of ``plan`` from one ``[H, W, C]`` uint8 ERP → ``[V, h, w, C]`` uint8."""
    if erp.shape[:2] != (plan.height, plan.width):
        raise ValueError(f"ERP is {erp.shape[1]}x{erp.shape[0]}, the plan was built for {plan.width}x{plan.height}")
    h, w = plan.view_size
    channels = erp.shape[2]
    needed = set().union(*(_ancestors(plan, g.source) for g in plan.groups))
    images = _derive_numpy(np.ascontiguousarray(erp), plan, needed)
    out = np.empty((sum(len(g.views) for g in plan.groups), h, w, channels), dtype=erp.dtype)
    interp = CV2_INTERP[plan.interpolation]
    for g in plan.groups:
        first, n = g.views[0], len(g.views)
        if g.identity:  # the area resize already made this view: no resampling
            out[first] = images[g.source]
            continue
        contiguous = g.views == tuple(range(first, first + n))
        # Write straight into the output when the group's views are consecutive (no copy).
        dst = out[first : first + n].reshape(n * h, w, channels) if contiguous else None
        m1, m2 = g.fixed if g.fixed is not None else (g.map_x, g.map_y)
        res = cv2.remap(images[g.source], m1, m2, interp, dst=dst, borderMode=cv2.BORDER_WRAP)
        if res.ndim == 2:
            res = res[..., None]
        if dst is None or not np.shares_memory(res, out):
            out[list(g.views)] = res.reshape(n, h, w, channels)
    return out


# -- torch ---------------------------------------------------------------------------------------
def _torch_grid(group: Group, source: Source, device: torch.device) -> torch.Tensor:
    key = str(device)
    grid = group.torch_grids.get(key)
    if grid is None:
        width = source.width + 2 * WRAP_PAD
        gx = (group.map_x + WRAP_PAD + 0.5) / width * 2.0 - 1.0
        gy = (group.map_y + 0.5) / source.height * 2.0 - 1.0
        grid = torch.from_numpy(np.stack([gx, gy], axis=-1)).unsqueeze(0).to(device)
        group.torch_grids[key] = grid
    return grid


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` box-overlap weights of an area downscale (what ``cv2.INTER_AREA`` computes)."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    cols = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(lo + scale, cols + 1) - np.maximum(lo, cols), 0.0, None)
    return (overlap / scale).astype(np.float32)


def _area_resize_torch(image: torch.Tensor, width: int, height: int, cache: dict) -> torch.Tensor:
    """Exact area resize ``[B, C, h, w] -> [B, C, height, width]`` as two small matmuls (any device)."""
    in_h, in_w = image.shape[-2:]
    if (in_h, in_w) == (2 * height, 2 * width):
        # 2×2 means as two strided sums: ~3x faster than avg_pool2d on CPU, same values.
        rows = image[..., 0::2, :] + image[..., 1::2, :]
        return (rows[..., 0::2] + rows[..., 1::2]).mul_(0.25)
    key = (in_h, in_w, height, width, str(image.device))
    if key not in cache:
        cache[key] = (
            torch.from_numpy(area_weights(in_h, height)).to(image.device),
            torch.from_numpy(area_weights(in_w, width)).to(image.device),
        )
    rows, cols = cache[key]
    return rows @ image @ cols.T


def _derive_torch(erp: torch.Tensor, plan: SamplingPlan, needed: set[int]) -> dict[int, torch.Tensor]:
    """Torch twin of :func:`_derive_numpy` (same area weights as ``cv2.INTER_AREA``)."""
    images = {0: erp}
    for i in sorted(needed - {0}):
        s = plan.sources[i]
        images[i] = _area_resize_torch(images[s.parent], s.width, s.height, plan.torch_cache)
    return images


def sample_torch(erp: torch.Tensor, plan: SamplingPlan) -> torch.Tensor:
    """All views from a batch of ERPs ``[B, C, H, W]`` float (any device) → ``[B, V, C, h, w]``."""
    if tuple(erp.shape[-2:]) != (plan.height, plan.width):
        raise ValueError(f"ERP is {erp.shape[-1]}x{erp.shape[-2]}, the plan was built for {plan.width}x{plan.height}")
    batch, channels = erp.shape[:2]
    h, w = plan.view_size
    needed = set().union(*(_ancestors(plan, g.source) for g in plan.groups))
    images = _derive_torch(erp, plan, needed)
    out = erp.new_empty((batch, sum(len(g.views) for g in plan.groups), channels, h, w))
    mode = plan.interpolation
    for g in plan.groups:
        src = images[g.source]
        if g.identity:
            out[:, g.views[0]] = src
            continue
        padded = torch.cat([src[..., -WRAP_PAD:], src, src[..., :WRAP_PAD]], dim=-1)
        grid = _torch_grid(g, plan.sources[g.source], erp.device).to(erp.dtype).expand(batch, -1, -1, -1)
        res = F.grid_sample(padded, grid, mode=mode, padding_mode="border", align_corners=False)
        n = len(g.views)
        out[:, list(g.views)] = res.view(batch, channels, n, h, w).transpose(1, 2)
    if mode == "bicubic":
        out.clamp_(0.0, 1.0)
    return out
