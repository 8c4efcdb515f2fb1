"""GRPO: the loss against hand-computed values, advantages, prompts and answers cut from batches."""

from __future__ import annotations

import math

import pytest
import torch

from cora.training.grpo import IGNORE_INDEX, cut_answers, group_advantages, grpo_loss, prompt_only, token_logprobs


def test_grpo_loss_equals_the_hand_computed_value_on_a_toy_batch():
    # Two answers: the first (advantage +1) has two tokens, the second (advantage -1) one token (one padded).
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.1, -1.9], [-0.2, 0.0]])
    ref = torch.tensor([[-1.2, -2.0], [-0.4, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[True, True], [True, False]])
    eps, beta = 0.2, 0.1
    # By hand, token by token: r = exp(logp - old); term = -min(r A, clip(r) A) + beta (e^d - d - 1), d = ref - logp.
    t11 = -math.exp(0.1) + beta * (math.exp(-0.2) + 0.2 - 1)  # r = 1.105 inside the clip range
    t12 = -math.exp(-0.1) + 0.0  # d = 0: no KL
    t21 = 0.8 + beta * (math.exp(0.1) - 0.1 - 1)  # r = 0.741 < 0.8 with A < 0: the clip flattens it to 0.8
    expected = ((t11 + t12) / 2 + t21) / 2
    out = grpo_loss(logp, old, ref, adv, mask, eps, beta)
    assert float(out.loss.detach()) == pytest.approx(expected, abs=1e-6)
    assert out.clip_fraction == pytest.approx(1 / 3)
    assert out.kl == pytest.approx(((math.exp(-0.2) + 0.2 - 1) + (math.exp(0.1) - 0.1 - 1)) / 3, abs=1e-7)
    out.loss.backward()
    # The clipped token gets no policy gradient, only the KL one: d/dlogp beta (e^d - d - 1) = beta (1 - e^d).
    assert float(logp.grad[1, 0]) == pytest.approx(beta * (1 - math.exp(0.1)) / 2, abs=1e-6)
    assert float(logp.grad[1, 1]) == 0.0


def test_with_fresh_answers_the_loss_is_the_policy_gradient_and_zero_advantage_gives_no_gradient():
    logp = torch.tensor([[-1.0, -3.0]], requires_grad=True)
    out = grpo_loss(logp, logp.detach(), None, torch.tensor([2.0]), torch.ones(1, 2, dtype=torch.bool), 0.2, 0.0)
    out.loss.backward()
    assert float(out.loss.detach()) == pytest.approx(-2.0)  # -mean(ratio 1 * A)
    assert logp.grad.tolist() == [[-1.0, -1.0]]  # -A / length per token
    zero = torch.tensor([[-1.0]], requires_grad=True)
    grpo_loss(
        zero, zero.detach(), None, torch.tensor([0.0]), torch.ones(1, 1, dtype=torch.bool), 0.2, 0.0
    ).loss.backward()
    assert zero.grad.item() == 0.0


def test_advantages_are_relative_to_their_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5])
    adv = group_advantages(rewards, 4, scale=False)
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    scaled = group_advantages(rewards, 4, scale=True)
    std = torch.tensor([1.0, 0.0, 0.0, 0.0]).std().item()  # unbiased, as TRL
    assert scaled[0].item() == pytest.approx(0.75 / (std + 1e-4))
    assert scaled[4:].tolist() == [0.0] * 4  # all equal: nothing to learn, no division by zero


def test_token_logprobs_read_the_logits_one_position_before_each_answer_token():
    logits = torch.log(torch.tensor([[[0.5, 0.5, 0.0 + 1e-9], [0.1, 0.7, 0.2], [0.3, 0.3, 0.4]]]))
    labels = torch.tensor([[IGNORE_INDEX, 1, 2]])
    logp, mask = token_logprobs(logits, labels)
    assert mask.tolist() == [[True, True]]
    assert logp[0].tolist() == pytest.approx([math.log(0.5), math.log(0.2)], abs=1e-6)


def test_prompts_are_cut_before_the_first_answer_token_and_left_padded():
    pad = 0
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 8, 9, 0]])
    labels = torch.tensor([[IGNORE_INDEX] * 3 + [8, 9], [IGNORE_INDEX] * 2 + [8, 9, IGNORE_INDEX]])
    prompts, mask = prompt_only(ids, labels, pad)
    assert prompts.tolist() == [[5, 6, 7], [0, 5, 6]]
    assert mask.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_answers_end_at_their_first_stop_token():
    new = torch.tensor([[4, 2, 9, 9], [4, 4, 4, 4]])
    answers, mask, finished = cut_answers(new, {2}, pad_id=0)
    assert answers.tolist() == [[4, 2, 0, 0], [4, 4, 4, 4]]
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert finished == [True, False]
