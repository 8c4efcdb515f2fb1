"""``stage_state.json``: which stages of a run are done, where their checkpoints are, their metrics."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cora.utils.io import atomic_write_json

STATE_FILE = "stage_state.json"


@dataclass
class StageState:
    experiment: str
    config_digest: str
    stages: list[str]
    completed: list[str] = field(default_factory=list)
    current: str | None = None
    checkpoints: dict[str, str] = field(default_factory=dict)
    last_checkpoint: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> StageState | None:
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"{path} is not a valid stage state file ({exc})") from exc

    def save(self, run_dir: Path) -> None:
        atomic_write_json(Path(run_dir) / STATE_FILE, asdict(self))

    def mark_running(self, stage: str) -> None:
        self.current = stage
        if stage in self.completed:
            self.completed.remove(stage)

    def mark_completed(self, stage: str, checkpoint: str, metrics: dict[str, Any], summary: dict[str, Any]) -> None:
        if stage not in self.completed:
            self.completed.append(stage)
        self.checkpoints[stage] = checkpoint
        self.metrics[stage] = metrics
        self.summaries[stage] = summary
        self.current = None
        self.last_checkpoint.pop(stage, None)

    def update_best(self, stage: str, metrics: dict[str, float]) -> None:
        """Keep, per metric, the best value seen (lower for losses/mse, higher for the rest)."""
        best = self.best.setdefault(stage, {})
        for key, value in metrics.items():
            lower = "loss" in key or key.endswith("mse")
            if key not in best or (value < best[key] if lower else value > best[key]):
                best[key] = value
