"""What the kit's two priors (language, vision) share: a manifest of what was trained, and
training that always starts from the component's base weights.

A prior replaces ``<kit>/<component>/model.safetensors`` in place and records
``{digest, weights, summary}`` in ``<kit>/<manifest>.json``. The component's base weights (as
``cora kit build`` wrote them) are kept in ``<kit>/.base/<component>.safetensors`` before the
first prior is written, so a prior trained with other settings (stale) is undone by restoring
them: a prior never builds on an older one, and redoing one prior leaves the other component
as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cora.utils.io import atomic_write_json

WEIGHTS = "model.safetensors"
Status = Literal["current", "stale", "none"]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


def _replace_atomically(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` through a temp file beside ``dst`` (no half-written ``dst``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}-")
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


@dataclass(frozen=True)
class KitPrior:
    """One prior of one kit component: ``component_dir`` (an HF folder), its manifest file name,
    and the digest of what this prior would be trained with (data, settings, seed)."""

    component_dir: Path
    manifest_name: str
    digest: str

    @property
    def weights(self) -> Path:
        return self.component_dir / WEIGHTS

    @property
    def manifest(self) -> Path:
        return self.component_dir.parent / self.manifest_name

    @property
    def base(self) -> Path:
        return self.component_dir.parent / ".base" / f"{self.component_dir.name}.safetensors"

    def status(self) -> Status:
        """``current`` (trained with this digest), ``stale`` (a prior trained with another one) or
        ``none`` (no prior on these weights: the kit's base weights)."""
        if not self.manifest.is_file():
            return "none"
        old = json.loads(self.manifest.read_text())
        if old.get("weights") != file_digest(self.weights):
            return "none"
        return "current" if old.get("digest") == self.digest else "stale"

    def summary(self) -> dict[str, Any]:
        return json.loads(self.manifest.read_text())["summary"]

    def start_from_base(self) -> None:
        """Make the component's weights file its base weights: keep a copy of them (no prior yet),
        or restore that copy (a prior is already there)."""
        if self.status() == "none":
            _replace_atomically(self.weights, self.base)
        elif not self.base.is_file():
            raise RuntimeError(
                f"{self.weights} holds a prior and its base weights ({self.base}) are missing: "
                f"rebuild the kit (`cora kit build --force`)"
            )
        else:
            _replace_atomically(self.base, self.weights)

    def save(self, model: Any, summary: dict[str, Any]) -> None:
        """Write ``model``'s weights over the component's (only that file changes) and the manifest."""
        with tempfile.TemporaryDirectory(dir=self.component_dir.parent, prefix=".prior-") as tmp:
            model.save_pretrained(tmp)
            os.replace(Path(tmp) / WEIGHTS, self.weights)
        atomic_write_json(
            self.manifest, {"digest": self.digest, "weights": file_digest(self.weights), "summary": summary}
        )
