"""A sweep file: a base config, named rows (config deltas) and seeds; each (row, seed) is one run.

```yaml
name: cora-ablation            # runs go to <output_dir>/<name>/<row>/seed-<s>/
base: ../configs/tiny.yaml     # relative to this file
seeds: [42, 7, 1]
reference: anyres_e2p          # the row every other row is compared with
prepare: demo                  # build SynthPano, the tiny kit and its priors first (once, from the base)
rows:
  resize: {image_processing: {crop_strategy: resize}}
  anyres_e2p: {}
```

A row's delta merges onto the base by the rules of ``extends`` (maps key by key, lists replaced);
a bad key names the sweep file and the row. The run's seed is ``experiment.seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cora.config import ConfigError, CoraConfig, load_config


class SweepError(ValueError):
    """A sweep file that cannot be run as written (the message names the file and the field)."""


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    base: str
    seeds: list[int] = Field(min_length=1)
    rows: dict[str, dict[str, Any]] = Field(min_length=1)
    reference: str | None = None
    prepare: Literal["none", "demo"] = "none"
    output_dir: str = "runs"
    #: where the sweep file lives: ``base`` and a relative ``output_dir`` are read from there
    source: Path = Path(".")

    @model_validator(mode="after")
    def _names(self) -> SweepSpec:
        bad = [r for r in self.rows if not r or "/" in r or r.startswith(".")]
        if bad:
            raise ValueError(f"rows: names must be plain folder names, got {bad}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: {self.seeds} repeats a seed")
        if self.reference is not None and self.reference not in self.rows:
            raise ValueError(f"reference: {self.reference!r} is not a row ({', '.join(self.rows)})")
        return self

    @property
    def base_path(self) -> Path:
        return (self.source.parent / self.base).resolve()

    @property
    def root(self) -> Path:
        """``<output_dir>/<name>``: the sweep's folder (``sweep.json``, the runs, the report)."""
        out = Path(self.output_dir)
        return (out if out.is_absolute() else Path.cwd() / out) / self.name

    def run_dir(self, row: str, seed: int) -> Path:
        return self.root / row / f"seed-{seed}"

    def select(self, rows: Sequence[str] | None, seeds: Sequence[int] | None) -> list[tuple[str, int]]:
        """The (row, seed) runs asked for, in row order then seed order; unknown names are an error."""
        unknown = [r for r in rows or () if r not in self.rows] + [str(s) for s in seeds or () if s not in self.seeds]
        if unknown:
            raise SweepError(
                f"{self.source}: not in the sweep: {', '.join(unknown)} (rows: {', '.join(self.rows)}; "
                f"seeds: {', '.join(map(str, self.seeds))})"
            )
        return [(r, s) for r in self.rows if not rows or r in rows for s in self.seeds if not seeds or s in seeds]

    def run_config(self, row: str, seed: int) -> CoraConfig:
        """The base + the row's delta, with the run's seed and folder."""
        where = {
            "experiment": {"seed": seed, "name": f"seed-{seed}", "output_dir": str(self.root / row)},
        }
        return load_config(self.base_path, [(self.rows[row], f"{self.source}: rows.{row}"), (where, str(self.source))])


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; every row's config is validated up front (a typo fails before training)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise SweepError(f"{path}: sweep file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SweepError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SweepError(f"{path}: the top level must be a mapping")
    try:
        spec = SweepSpec.model_validate({**data, "source": path})
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise SweepError(f"{path}: {details}") from None
    for row in spec.rows:
        try:
            spec.run_config(row, spec.seeds[0])
        except ConfigError as exc:
            raise SweepError(str(exc)) from None
    return spec
