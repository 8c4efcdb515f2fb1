"""Strategy fsdp (FSDP2) in one process (a 1-rank gloo group): the sharding plan, a sharded run that learns
what an unsharded one learns and resumes, optimiser states that load across layouts, and the refusals
(rl stages under fsdp, DeepSpeed mid-stage). The 2-process runs are in tests/test_ddp_resume.py."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

from cora.training.checkpoint import load_checkpoint, save_checkpoint
from cora.training.runner import RunError, config_digest, train
from cora.training.sharding import BY_NAME, _keyed_by_name, load_optimizer_state, shard_model
from tests.standin import standin_config, standin_data, standin_model
from tests.test_runner import Crash, final_weights


@pytest.fixture
def one_rank_group():
    """A world of one process (Lightning's ModelParallelStrategy makes its own), destroyed afterwards with
    the variables Lightning set for it (MASTER_PORT, WORLD_SIZE, ...: later multi-process tests inherit them)."""
    saved = dict(os.environ)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


def _trained_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(3, 4)).square().sum().backward()
    opt.step()
    return opt


def _small() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    model[0].bias.requires_grad_(False)
    return model


def test_a_plain_optimizer_state_loads_keyed_by_name_and_the_other_way():
    model, other = _small(), _small()
    opt = _trained_optimizer(model)
    plain = opt.state_dict()
    keyed = _keyed_by_name(model, opt, plain)
    assert set(keyed["state"]) == {"0.weight", "2.weight", "2.bias"}
    fresh = torch.optim.AdamW([p for p in other.parameters() if p.requires_grad], lr=0.5)
    load_optimizer_state(other, fresh, keyed, BY_NAME)
    for a, b in zip(fresh.state_dict()["state"].values(), plain["state"].values(), strict=True):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert fresh.param_groups[0]["lr"] == 0.1  # the hyperparameters come back too
    # What an FSDP run writes (torch.distributed.checkpoint's full state) loads without any process group.
    full = get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    again = torch.optim.AdamW([p for p in other.parameters() if p.requires_grad], lr=0.5)
    load_optimizer_state(other, again, full, BY_NAME)
    torch.testing.assert_close(again.state_dict()["state"], plain["state"], rtol=0, atol=0)


def test_the_sharding_plan_makes_one_unit_per_layer_of_each_outermost_stack(one_rank_group, tmp_path):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(4, 4)
            self.layers = nn.ModuleList([Block(), Block(), nn.Identity()])

    net = Net()
    shard_model(net, init_device_mesh("cpu", (1,)))
    units = sorted(name for name, m in net.named_modules() if isinstance(m, FSDPModule))
    assert units == ["", "layers.0", "layers.1"]  # not the parameterless item, not the nested stack
    shard_model(net, init_device_mesh("cpu", (1,)))  # a second call leaves it as it is
    assert sorted(name for name, m in net.named_modules() if isinstance(m, FSDPModule)) == units


def test_an_fsdp_run_learns_what_an_unsharded_run_learns_and_resumes(one_rank_group, tmp_path):
    ref = train(standin_config(tmp_path / "plain"), model_factory=standin_model, data_factory=standin_data)
    sharded = train(standin_config(tmp_path / "fsdp", strategy="fsdp"), model_factory=standin_model,
                    data_factory=standin_data)  # fmt: skip
    a, b = final_weights(ref.model), final_weights(sharded.model)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)  # one rank: nothing reordered
    # Killed mid-stage, resumed: same weights; its checkpoints hold whole tensors, the optimiser keyed by name.
    cfg = standin_config(tmp_path / "killed", strategy="fsdp")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, model_factory=standin_model, data_factory=standin_data, callbacks=[Crash("resampler", 5)])
    run = tmp_path / "killed/runs/standin"
    ckpt = load_checkpoint(run / "checkpoints/resampler/step-000004.ckpt")
    assert ckpt["optimizer_layout"] == BY_NAME and all(type(t) is torch.Tensor for t in ckpt["trainable"].values())
    resumed = train(cfg, resume="auto", model_factory=standin_model, data_factory=standin_data)
    assert resumed.summaries["resampler"]["resumed_at"] == 4
    c = final_weights(resumed.model)
    for name in b:
        torch.testing.assert_close(c[name], b[name], rtol=0, atol=0, msg=name)
    assert json.loads((run / "stage_state.json").read_text())["completed"] == ["vision", "resampler", "finetune"]


def test_the_strategy_is_not_part_of_what_a_run_trains(one_rank_group, tmp_path):
    assert config_digest(standin_config(tmp_path, strategy="fsdp")) == config_digest(standin_config(tmp_path))
    assert config_digest(standin_config(tmp_path, devices=2)) != config_digest(standin_config(tmp_path))
    # A run recorded with its strategy in the digest (before this rule) still resumes with its config.
    ddp = standin_config(tmp_path, strategy="ddp")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(ddp, model_factory=standin_model, data_factory=standin_data, callbacks=[Crash("resampler", 3)])
    state_file = tmp_path / "runs/standin/stage_state.json"
    state = json.loads(state_file.read_text())
    state["config_digest"] = config_digest(ddp, legacy=True)
    assert state["config_digest"] != config_digest(ddp)
    state_file.write_text(json.dumps(state))
    resumed = train(ddp, resume="auto", model_factory=standin_model, data_factory=standin_data)
    assert resumed.summaries["resampler"]["resumed_at"] == 2
    assert json.loads(state_file.read_text())["config_digest"] == config_digest(ddp)


def test_deepspeed_refuses_to_resume_mid_stage_and_fsdp_refuses_rl_stages(tmp_path):
    cfg = standin_config(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, model_factory=standin_model, data_factory=standin_data, callbacks=[Crash("resampler", 3)])
    deepspeed = standin_config(tmp_path, strategy="deepspeed_stage_2")
    with pytest.raises(RunError, match="deepspeed_stage_2 cannot resume in the middle of a stage"):
        train(deepspeed, resume="auto", model_factory=standin_model, data_factory=standin_data)
    # A checkpoint DeepSpeed wrote holds rank 0's part of a partitioned optimiser: no strategy resumes it.
    ckpt = tmp_path / "runs/standin/checkpoints/resampler/step-000002.ckpt"
    payload = load_checkpoint(ckpt)
    save_checkpoint(ckpt, payload | {"strategy": "DeepSpeedStrategy", "optimizer": {"zero_stage": 2}})
    with pytest.raises(RunError, match="written under DeepSpeed.*`cora train --config CFG --stage resampler`"):
        train(cfg, resume="auto", model_factory=standin_model, data_factory=standin_data)

    from pydantic import ValidationError

    from cora.config import CoraConfig

    with pytest.raises(ValidationError, match="strategy fsdp runs without fp16 loss scaling"):
        CoraConfig.model_validate({"training": {"strategy": "fsdp", "precision": "16-mixed"}})
    with pytest.raises(ValidationError, match="strategy fsdp trains sft stages only; rl is an rl stage"):
        CoraConfig.model_validate(
            {"training": {"strategy": "fsdp", "stages": ["finetune", "rl"], "stage_configs": {"rl": {"kind": "rl"}}}}
        )
