"""Shared fixtures: offline hub, the tiny kit (built once per session), ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub anywhere in the tests: a download attempt must fail, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Tiny models on a shared 2-core machine: one torch thread is several times faster than two
# contending with other processes (CORA_TEST_THREADS=0 keeps torch's default).
if os.environ.get("CORA_TEST_THREADS", "1") != "0":
    import torch

    torch.set_num_threads(int(os.environ.get("CORA_TEST_THREADS", "1")))
    # configs with `auto` threads and loader workers (tiny.yaml) count one CPU: one thread, no worker process
    os.environ.setdefault("CORA_CPUS", os.environ.get("CORA_TEST_THREADS", "1"))

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _find_shared_data() -> Path:
    # CORA_SHARED_DATA wins; else ../shared/data beside the checkout (a git worktree
    # elsewhere can point the variable at it).
    env = os.environ.get("CORA_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


SHARED_DATA = _find_shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real panoramas, the real Qwen3 tokenizer); skip where absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (a user's clone has no ../shared): real-data test skipped")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_config():
    from cora.config import load_config

    return load_config(CONFIGS / "tiny.yaml")


@pytest.fixture(scope="session")
def kit_paths(tiny_config, tmp_path_factory):
    """The tiny kit written to a temp folder once per test session."""
    from cora.kit import build_kit

    return build_kit(tiny_config.kit, out_dir=tmp_path_factory.mktemp("kit"), seed=0)


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """A small SynthPano dataset (10 panoramas 128×64: train/val/test CSVs and JSONL), written once."""
    from cora.data.synth.dataset import write_synth_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synth_dataset(out, n=10, seed=0, width=128, height=64)
    return out
