"""The language prior: a short text-only pretraining of the kit's tiny LLM on the synthetic corpus.

A randomly initialised LLM cannot form a sentence, so the demo's vision stages would spend
their few steps learning English instead of learning to look. A few hundred steps of
next-token prediction on the corpus (captions, questions, answers) give the tiny model the
language first. The trained weights replace the kit's ``model.safetensors`` (atomic rename),
and ``<kit>/prior.json`` records what was trained so an up-to-date prior is skipped; a prior
always starts from the kit's base LLM (:mod:`cora.recipes.demo.kit_prior`). Both the vision run
and the blind run of the demo start from the same prior.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from cora.config.sections.demo import LanguagePriorConfig
from cora.recipes.demo.kit_prior import KitPrior, Status
from cora.training.schedule import warmup_cosine

logger = logging.getLogger(__name__)


def _prior(lm_dir: str | Path, texts: Sequence[str], cfg: LanguagePriorConfig, seed: int) -> KitPrior:
    payload = json.dumps(
        {
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            "cfg": cfg.model_dump(mode="json"),
            "seed": seed,
        },
        sort_keys=True,
    )
    return KitPrior(Path(lm_dir), "prior.json", hashlib.sha256(payload.encode()).hexdigest()[:16])


def pack_texts(texts: Sequence[str], tokenizer: Any, seq_len: int) -> torch.Tensor:
    """Every text + EOS, concatenated and cut into ``[N, seq_len]`` rows (the tail is dropped)."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n = len(ids) // seq_len
    if n < 2:
        raise ValueError(f"the prior corpus has {len(ids)} tokens: fewer than two sequences of {seq_len}")
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


@torch.no_grad()
def _heldout_loss(model: torch.nn.Module, rows: torch.Tensor, batch: int) -> float:
    model.eval()
    losses = [
        model(input_ids=rows[i : i + batch], labels=rows[i : i + batch]).loss.item() for i in range(0, len(rows), batch)
    ]
    model.train()
    return sum(losses) / len(losses)


def _fit(model: torch.nn.Module, train: torch.Tensor, cfg: LanguagePriorConfig) -> float:
    """Next-token training on random batches of ``train`` rows for ``cfg.steps`` steps; returns the seconds taken."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_ratio * cfg.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, cfg.steps, warmup))
    model.train()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(len(train), (cfg.batch_size,))
        loss = model(input_ids=train[idx], labels=train[idx]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0:
            logger.debug("prior step %d loss %.3f", step, loss.item())
    return time.perf_counter() - t0


def prior_status(lm_dir: str | Path, texts: Sequence[str], cfg: LanguagePriorConfig, seed: int = 0) -> Status:
    """``current`` (trained with these texts and settings), ``stale`` (a prior trained with other
    ones, undone before training again) or ``none`` (base weights)."""
    return _prior(lm_dir, texts, cfg, seed).status()


def train_language_prior(
    lm_dir: str | Path, texts: Sequence[str], cfg: LanguagePriorConfig, seed: int = 0, force: bool = False
) -> dict[str, Any]:
    """Pretrain the LLM in ``lm_dir`` on ``texts`` and save it back; skipped when already done.

    Returns a summary: ``skipped``, ``steps``, ``seconds``, held-out loss ``before``/``after``
    (5% of the packed sequences are held out).
    """
    prior = _prior(lm_dir, texts, cfg, seed)
    if not force and prior.status() == "current":
        logger.info("language prior in %s is up to date", lm_dir)
        return prior.summary() | {"skipped": True}
    prior.start_from_base()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32)
    rows = pack_texts(texts, tokenizer, cfg.seq_len)
    rows = rows[torch.randperm(len(rows))]
    n_val = max(1, len(rows) // 20)
    val, train = rows[:n_val], rows[n_val:]
    before = _heldout_loss(model, val, cfg.batch_size)
    seconds = _fit(model, train, cfg)
    after = _heldout_loss(model, val, cfg.batch_size)
    summary = {
        "skipped": False,
        "steps": cfg.steps,
        "sequences": len(train),
        "seq_len": cfg.seq_len,
        "seconds": round(seconds, 1),
        "heldout_loss_before": round(before, 4),
        "heldout_loss_after": round(after, 4),
    }
    prior.save(model, summary)
    logger.info("language prior: held-out loss %.3f → %.3f in %d steps (%.1fs)", before, after, cfg.steps, seconds)
    return summary
