"""The ``rl`` stage: Group Relative Policy Optimization (GRPO) on verifiable rewards.

For each prompt of a batch the model samples ``G`` answers; each is scored by the stage's rewards
(:mod:`cora.rewards`); an answer's advantage is its reward relative to its group
(``(r - mean) / std``); the loss is the clipped policy-ratio objective plus ``beta`` × a KL penalty
to the reference policy, averaged over each answer's tokens, then over answers (DeepSeekMath's GRPO)::

    ratio = exp(logp - logp_old)
    loss_t = -min(ratio · A, clip(ratio, 1 ± eps) · A) + beta · (exp(ref - logp) - (ref - logp) - 1)

The reference policy is the weights the stage started from. Only the trainable tensors differ from
it (LoRA adapters, projector, ...), so the module keeps a copy of those alone, taken before any resume,
and runs the reference forward through ``torch.func.functional_call`` with them: no second model.
(The adapter-disabled LLM is *not* the reference here: CORA's ``rl`` stage continues the LoRA adapter
that stage 3 trained, whose weights are part of the starting policy.)

Why not TRL's ``GRPOTrainer``: it drives a causal LM from text prompts with its own loop and
trainer; CORA's models take panoramas' views and geometries, train in the stage runner (its
checkpoints, exact resume, loggers, DDP), and sample through their own ``generate``. The loop here is
the part of TRL's algorithm those need, kept small and tested against hand-computed values.

With ``rl.iterations`` = μ > 1 the same answers serve μ optimiser steps (the sampler repeats the
batch μ times); ``logp_old`` is the policy that sampled them, so the ratio moves away from 1 and
the clip acts. The answers, their advantages and reference log-probabilities are part of the
checkpoint, so a run resumed in the middle of such a cycle continues exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from cora.model.fusion import to_left_padding
from cora.rewards import Completion, RewardFn
from cora.training.module import StageModule

IGNORE_INDEX = -100


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """``[B*G]`` rewards (groups contiguous) → advantages relative to each group's mean (and std)."""
    grouped = rewards.float().view(-1, group_size)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + eps)
    return advantages.flatten()


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every labelled token under the logits one position before it.

    ``logits [N, T, V]``, ``labels [N, T]`` (-100 = not an answer token) → ``logp [N, T-1]`` (0 where
    masked) and ``mask [N, T-1]``. The softmax is taken only at answer positions.
    """
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    picked = logits[:, :-1][mask].float()  # [K, V]
    values = torch.log_softmax(picked, dim=-1).gather(-1, target[mask].unsqueeze(-1)).squeeze(-1)
    logp = torch.zeros(target.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)
    return logp, mask


@dataclass(frozen=True)
class GRPOLoss:
    loss: torch.Tensor  # scalar, on the graph
    kl: float  # mean per-token KL estimate to the reference
    clip_fraction: float  # share of answer tokens whose objective the clip flattened


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    beta: float,
) -> GRPOLoss:
    """The GRPO objective (module docstring) over ``[N, T]`` token log-probs and ``[N]`` advantages."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1).to(ratio.dtype)
    per_token = -torch.minimum(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv)
    m = mask.to(ratio.dtype)
    kl = torch.zeros_like(per_token)
    if ref_logp is not None and beta > 0:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    lengths = m.sum(dim=1).clamp(min=1)
    loss = ((per_token * m).sum(dim=1) / lengths).mean()
    clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
    tokens = m.sum().clamp(min=1)
    return GRPOLoss(loss, float((kl.detach() * m).sum() / tokens), float((clipped.to(m.dtype) * m).sum() / tokens))


def prompt_only(input_ids: torch.Tensor, labels: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts of a training batch (every token before the first labelled one), left-padded."""
    has_label = labels != IGNORE_INDEX
    lengths = torch.where(has_label.any(dim=1), has_label.int().argmax(dim=1), (input_ids != pad_id).sum(dim=1))
    width = int(lengths.max())
    ids, mask = input_ids[:, :width].clone(), torch.zeros_like(input_ids[:, :width])
    for b, n in enumerate(lengths.tolist()):
        mask[b, :n] = 1
        ids[b, n:] = pad_id
    return to_left_padding(ids, mask, pad_id)


def cut_answers(new: torch.Tensor, stop_ids: set[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
    """Generated ``[N, L]`` ids → the answers through their first stop token (kept: the model learns to
    stop), their mask, and whether each one stopped by itself."""
    mask = torch.zeros_like(new)
    finished = []
    for row in range(new.shape[0]):
        ids = new[row].tolist()
        end = next((i for i, t in enumerate(ids) if t in stop_ids), None)
        n = len(ids) if end is None else end + 1
        mask[row, :n] = 1
        finished.append(end is not None)
    return new.masked_fill(mask == 0, pad_id), mask, finished


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Every submodule in eval mode (no dropout while sampling), then each back in its own mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class GRPOStageModule(StageModule):
    """A ``kind: rl`` stage in the same runner: sampling, rewards and the GRPO loss in ``training_step``."""

    def __init__(
        self,
        *args: Any,
        reward: RewardFn,
        reference: dict[str, torch.Tensor],
        stop_token_ids: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.rl = self.stage_cfg.rl
        self.reward, self.reference = reward, reference
        tok = self.model.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.stop_ids = set(stop_token_ids) | ({tok.eos_token_id} if tok.eos_token_id is not None else set())
        state = (self.resume or {}).get("module_state") or {}
        self._rollout: dict[str, torch.Tensor] | None = state.get("rollout")

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        if self._rollout is not None:
            state["rollout"] = self._rollout
        return state

    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """Validation of an rl stage: the held-out answers' LM loss (teacher-forced on the references), whatever
        ``lm_loss_weight`` says (the stage learns from rewards, not from it)."""
        out = self._forward(batch)
        if out.loss is None:
            raise RuntimeError(f"stage {self.stage_name}: the model returned no LM loss for a batch with labels")
        return out.loss.float(), {"lm_loss": out.loss.float()}, out

    # -- sampling ----------------------------------------------------------------------
    def _pixels(self, batch: dict[str, Any]) -> torch.Tensor:
        pixels = batch["pixel_values"]
        return torch.zeros_like(pixels) if self.blind else pixels

    @torch.no_grad()
    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """G answers per prompt, their rewards and advantages, as the tensors the loss needs."""
        group = self.rl.group_size
        prompts, prompt_mask = prompt_only(batch["input_ids"], batch["labels"], self.pad_id)
        prompts, prompt_mask = prompts.repeat_interleave(group, 0), prompt_mask.repeat_interleave(group, 0)
        pixels = self._pixels(batch).repeat_interleave(group, 0)
        with eval_mode(self.model):
            new = self.model.generate(
                pixels,
                batch["geometries"],
                prompts,
                prompt_mask,
                do_sample=True,
                temperature=self.rl.temperature,
                top_p=self.rl.top_p,
                top_k=0,
                max_new_tokens=self.rl.max_new_tokens,
                eos_token_id=sorted(self.stop_ids),
                pad_token_id=self.pad_id,
            )
        answers, answer_mask, finished = cut_answers(new, self.stop_ids, self.pad_id)
        texts = self.model.tokenizer.batch_decode(answers * answer_mask, skip_special_tokens=True)
        metas = [meta for meta in batch["meta"] for _ in range(group)]
        rewards = torch.tensor(
            [
                self.reward(
                    Completion(
                        text.strip(),
                        tuple(meta["references"]),
                        meta.get("query") or "",
                        meta.get("type"),
                        meta.get("seam"),
                        done,
                        tuple(meta.get("rejected") or ()),
                    )
                )
                for text, meta, done in zip(texts, metas, finished, strict=True)
            ]
        )
        labels = torch.cat(
            [torch.full_like(prompts, IGNORE_INDEX), answers.masked_fill(answer_mask == 0, IGNORE_INDEX)], 1
        )
        rollout = {
            "input_ids": torch.cat([prompts, answers], 1),
            "attention_mask": torch.cat([prompt_mask, answer_mask], 1),
            "labels": labels,
            "rewards": rewards,
            "advantages": group_advantages(rewards, group, self.rl.scale_rewards),
        }
        if self.rl.beta > 0:
            out = torch.func.functional_call(
                self.model,
                self.reference,
                (pixels, batch["geometries"]),
                {k: rollout[k] for k in ("input_ids", "attention_mask", "labels")},
                strict=False,
            )
            rollout["ref_logp"] = token_logprobs(out.logits, out.labels)[0]
        return rollout

    # -- training ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if not self._count(batch):
            return self._skipped_step()
        step = self.plan.start_step + self.trainer.global_step
        fresh = self._rollout is None or step % self.rl.iterations == 0
        if fresh:
            self._rollout = self.sample(batch)
        rollout = self._rollout
        group = self.rl.group_size
        out = self.model(
            self._pixels(batch).repeat_interleave(group, 0),
            batch["geometries"],
            input_ids=rollout["input_ids"],
            attention_mask=rollout["attention_mask"],
            labels=rollout["labels"],
        )
        logp, mask = token_logprobs(out.logits, out.labels)
        if fresh:
            # The policy that sampled the answers is the current one: logp_old = logp (ratio 1).
            rollout["old_logp"] = logp.detach()
        terms = grpo_loss(
            logp,
            rollout["old_logp"],
            rollout.get("ref_logp"),
            rollout["advantages"],
            mask,
            self.rl.epsilon,
            self.rl.beta,
        )
        self._check_finite(terms.loss, {"kl": terms.kl})
        self._log_step(terms, rollout, batch["pixel_values"].shape[0])
        return terms.loss

    def _log_step(self, terms: GRPOLoss, rollout: dict[str, torch.Tensor], batch_size: int) -> None:
        rewards = rollout["rewards"]
        values = {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "kl": terms.kl,
            "clip_fraction": terms.clip_fraction,
            "answer_length": float((rollout["labels"] != IGNORE_INDEX).sum(dim=1).float().mean()),
        }
        self.log("loss", terms.loss.detach(), prog_bar=True, batch_size=batch_size)
        for name, value in values.items():
            self.log(f"train/{name}", value, prog_bar=name == "reward_mean", batch_size=batch_size)
        self.last_train = {"loss": float(terms.loss.detach())} | values
