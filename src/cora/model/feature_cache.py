"""The frozen-tower feature cache: a panorama's tower outputs computed once per stage setting, then reused.

In a stage whose vision tower is frozen, the tower's output for a panorama depends only on the view
pixels (which carry the panorama, the view geometry and the image processing), the geometries and the
tower's weights and normalisation. :class:`TowerFeatureCache` keys each panorama's ``[V, grid², hidden]``
patch features by a sha256 of exactly those, keeps the most recent ones in memory and, with ``disk_dir``,
every one on disk (one safetensors file per key, written atomically). A stage that trains the tower never
reads it, and a tower whose weights changed (an earlier stage trained it) has another fingerprint, so a
stale feature is never read. Why hand-written: HF and Lightning cache nothing between forwards of a
frozen submodule; the key has to know CORA's views.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from cora.utils.io import atomic_open


def tensor_digest(digest: hashlib._Hash, tensor: torch.Tensor) -> None:
    """Feed a tensor's dtype, shape and bytes to ``digest``."""
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.view(torch.uint8).numpy().tobytes())


class TowerFeatureCache:
    """Panorama → tower patch features (memory LRU of ``max_items``, then ``disk_dir`` if given)."""

    def __init__(self, max_items: int = 256, disk_dir: str | Path | None = None) -> None:
        self.max_items = max_items
        self.disk_dir = Path(disk_dir) if disk_dir is not None else None
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def key(self, views: torch.Tensor, geometries: Sequence[object], fingerprint: str) -> str:
        """``views [V, 3, S, S]`` of one panorama, its geometries, the tower's fingerprint → the cache key."""
        digest = hashlib.sha256(fingerprint.encode())
        digest.update(repr(list(geometries)).encode())
        tensor_digest(digest, views)
        return digest.hexdigest()

    def _get(self, key: str) -> torch.Tensor | None:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        if self.disk_dir is not None and (path := self.disk_dir / f"{key}.safetensors").is_file():
            from safetensors.torch import load_file

            features = load_file(path)["features"]
            self._remember(key, features)
            return features
        return None

    def _remember(self, key: str, features: torch.Tensor) -> None:
        self.memory[key] = features
        if len(self.memory) > self.max_items:
            self.memory.popitem(last=False)

    def _put(self, key: str, features: torch.Tensor) -> None:
        features = features.detach().cpu().contiguous()
        self._remember(key, features)
        if self.disk_dir is not None:
            from safetensors.torch import save

            path = self.disk_dir / f"{key}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as handle:
                handle.write(save({"features": features}))

    def features(
        self,
        pixel_values: torch.Tensor,
        geometries: Sequence[object],
        fingerprint: str,
        tower: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``pixel_values [B, V, 3, S, S]`` → ``[B*V, grid², hidden]``: cached panoramas read, the others run
        through ``tower`` (in one batch) and stored."""
        b, v = pixel_values.shape[:2]
        keys = [self.key(pixel_values[i], geometries, fingerprint) for i in range(b)]
        found = [self._get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += b - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                computed = tower(pixel_values[missing].flatten(0, 1)).unflatten(0, (len(missing), v))
            for i, features in zip(missing, computed, strict=True):
                self._put(keys[i], features)
                found[i] = self.memory[keys[i]]
        device = pixel_values.device
        return torch.cat([f.to(device) for f in found])
