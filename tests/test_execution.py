"""Execution options (bench.execution): precision, TF32, channels-last, compile, data workers.

They change speed, never the protocol: the options that can change a number are part of the
job key (only when they differ from the defaults, so default keys stay what they were), data
workers are not; bf16/fp16 really run the forward in that precision and hand float32 to the
losses and metrics; fp16 trains with a loss scaler; runs on CPU in every precision finish with
finite losses.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from bench.config import ConfigError, RunConfig
from bench.cost import peak_tflops, training_throughput
from bench.execution import Execution, configure_matmul, make_scaler, prepare_model, tf32_active
from bench.jobs import build_config
from bench.runner import run_job
from bench.training import train_step
from methods.base import Output


def test_default_execution_leaves_the_key_as_it_was():
    cfg = RunConfig("early", "wdbc", code_version="c")
    assert "execution" not in cfg.key_fields()
    same = dataclasses.replace(cfg, execution=Execution(data_workers=4))
    assert same.key() == cfg.key(), "data workers cannot change a number: not part of the key"
    for option in ({"precision": "bf16"}, {"precision": "fp16"}, {"tf32": False}, {"channels_last": True},
                   {"compile": True}):
        other = dataclasses.replace(cfg, execution=Execution(**option))
        assert other.key() != cfg.key(), option
        assert other.request_id() != cfg.request_id(), f"{option} is part of the request, not provenance"
        assert other.key_fields()["execution"] == option


def test_build_config_checks_and_labels_execution():
    cfg = build_config("early", "wdbc", preset="tiny", execution=Execution(precision="bf16", channels_last=True))
    assert cfg.label() == "early@tiny[channels_last=true,precision=bf16]"
    with pytest.raises(ConfigError, match="--precision fp8: must be one of fp32, bf16, fp16"):
        build_config("early", "wdbc", execution=Execution(precision="fp8"))
    with pytest.raises(ConfigError, match="--data-workers -1: must be >= 0"):
        build_config("early", "wdbc", execution=Execution(data_workers=-1))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)
        self.seen: dict[str, object] = {}

    def forward(self, batch):
        x = batch["inputs"]["image"]
        self.seen["input_channels_last"] = x.is_contiguous(memory_format=torch.channels_last)
        h = self.conv(x).mean(dim=(2, 3))
        out = self.fc(h)
        self.seen["dtype"] = out.dtype
        return Output({"y": out}, aux={"h": h}, losses={"aux": out.pow(2).mean() * 0})

    def loss(self, output, batch):
        total = nn.functional.cross_entropy(output.preds["y"], batch["targets"]["y"])
        return total, {"task": total}


def _batch(n=6):
    g = torch.Generator().manual_seed(0)
    return {"inputs": {"image": torch.randn(n, 3, 8, 8, generator=g)},
            "targets": {"y": torch.randint(0, 2, (n,), generator=g)}}


@pytest.mark.parametrize("precision,inner", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_reduced_precision_runs_the_forward_in_it_and_returns_float32(precision, inner):
    net = prepare_model(_Net(), Execution(precision=precision), torch.device("cpu"))
    out = net(_batch())
    assert net.seen["dtype"] == inner, "autocast was not active inside the forward"
    assert out.preds["y"].dtype == torch.float32 and out.aux["h"].dtype == torch.float32
    assert out.losses["aux"].dtype == torch.float32


def test_fp32_leaves_the_model_untouched():
    net = _Net()
    forward = net.forward
    assert prepare_model(net, Execution(), torch.device("cpu")).forward == forward
    assert net(_batch()).preds["y"].dtype == torch.float32


def test_channels_last_moves_weights_and_image_inputs():
    net = prepare_model(_Net(), Execution(channels_last=True), torch.device("cpu"))
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    net(_batch())
    assert net.seen["input_channels_last"]
    plain = _Net()
    plain(_batch())
    assert not plain.seen["input_channels_last"]


def test_compile_compiles_in_place_keeping_state_dict_keys(monkeypatch):
    calls = []
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: calls.append(self))
    net = _Net()
    keys = list(net.state_dict())
    assert prepare_model(net, Execution(compile=True), torch.device("cpu")) is net
    assert calls == [net] and list(net.state_dict()) == keys


def test_fp16_trains_with_a_loss_scaler():
    assert make_scaler(Execution(), torch.device("cpu")) is None
    assert make_scaler(Execution(precision="bf16"), torch.device("cpu")) is None
    scaler = make_scaler(Execution(precision="fp16"), torch.device("cpu"))
    net = prepare_model(_Net(), Execution(precision="fp16"), torch.device("cpu"))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.fc.weight.detach().clone()
    loss = train_step(net, _batch(), opt, grad_clip=1.0, step=0, scaler=scaler)
    assert math.isfinite(loss)
    assert scaler.get_scale() > 0 and scaler._scale is not None, "the scaler was not used"
    assert not torch.equal(before, net.fc.weight), "the scaled step did not update the weights"


def test_tf32_only_for_fp32_on_ampere_gpus_outside_deterministic_mode(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not tf32_active(Execution(), cpu, deterministic=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert tf32_active(Execution(), cuda, deterministic=False)
    assert not tf32_active(Execution(), cuda, deterministic=True)
    assert not tf32_active(Execution(precision="bf16"), cuda, deterministic=False)
    assert not tf32_active(Execution(tf32=False), cuda, deterministic=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    assert not tf32_active(Execution(), cuda, deterministic=False), "no TF32 before Ampere"
    assert configure_matmul(Execution(), cpu, deterministic=True) is False
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "ieee", "convolutions must not use TF32 unasked"


def test_peak_share_uses_the_known_peak_of_the_device(monkeypatch):
    assert peak_tflops(torch.device("cpu"), "bf16") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert peak_tflops(torch.device("cuda"), "bf16") == 989.0
    row = training_throughput(1e9, 36, 0.1, torch.device("cuda"), "bf16")
    assert row["train_tflops_per_s"] == pytest.approx(3 * 1e9 * 36 / 0.1 / 1e12)
    assert row["peak_share"] == pytest.approx(row["train_tflops_per_s"] / 989.0)
    assert training_throughput(1e9, 36, 0.1, torch.device("cpu"), "fp32")["peak_share"] is None


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_finish_with_finite_losses_and_are_recorded(precision, tmp_path):
    cfg = build_config("attention", "wdbc", preset="tiny", sets={"epochs": "2"},
                       execution=Execution(precision=precision))
    record = run_job(cfg, None, tmp_path, progress=False, strict=True)
    assert record.status == "ok", record.error
    assert all(math.isfinite(h["train_loss"]) for h in record.summary["history"])
    assert record.env["execution"] == {"precision": precision, "tf32": False, "channels_last": False,
                                       "compile": False, "data_workers": 0}
    assert record.config["execution"]["precision"] == precision
    assert 0.0 <= record.cost["data_wait_s"] <= record.cost["train_time_s"]
