"""Single-pass forward of the shared-network segmentation methods (m4oe, swinunet-joint): one
``SwinUNet`` call on a mixed-domain batch gives the same ``Output`` (logits per domain in batch
order, gates in batch order), loss and gradients as the per-domain loop (``forward_per_domain``)."""
from __future__ import annotations

import pytest
import torch

from datasets.spec import DatasetSpec, ModalitySpec, TaskSpec
from methods import parse_method
from methods.nets.swin_unet import MoEFFN
from methods.presets import resolve_hparams

CLASSES = (5, 3, 7)
DOMAINS = (2, 0, 1, 1, 0, 2, 0)  # shuffled, every domain, unequal counts
CASES = [("m4oe", {"routing": "gated"}), ("m4oe", {"routing": "gated-code"}), ("m4oe", {"routing": "hard"}),
         ("m4oe", {"routing": "gated", "repeat_channels": 3}), ("swinunet-joint", {})]
IDS = ["m4oe-gated", "m4oe-gated-code", "m4oe-hard", "m4oe-gated-repeat3", "swinunet-joint"]


def _spec() -> DatasetSpec:
    tasks = tuple(TaskSpec(f"d{i}", "segmentation", c) for i, c in enumerate(CLASSES))
    return DatasetSpec("fake", (ModalitySpec("image", "volume3d", (1, 8, 64, 64)),), tasks, "n/a", "test")


def _model(method: str, over: dict, seed: int = 0):
    cls, _ = parse_method(method)
    # two blocks in the first stages so shifted windows run; drop_path 0 so train mode is deterministic
    hp = resolve_hparams(cls.defaults(), "tiny", {"depths": "2,2,1,1", "drop_path": 0.0, **over})
    torch.manual_seed(seed)
    model = cls(_spec(), hp)
    with torch.no_grad():  # sharper gates than at init, so each sample's gates are visibly its own
        for m in model.modules():
            if isinstance(m, MoEFFN) and m.gate is not None:
                m.gate.proj.weight.mul_(50.0)
    return model


def _batch(domains=DOMAINS, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = len(domains)
    label = torch.randint(-1, min(CLASSES), (n, 64, 64), generator=g)
    return {"inputs": {"image": torch.randn(n, 1, 64, 64, generator=g)}, "domain": torch.tensor(domains),
            "label": label, "index": torch.arange(n)}


def _both(model, batch):
    assert type(model).single_pass
    single = model(batch)
    model.single_pass = False
    try:
        loop = model(batch)
    finally:
        del model.single_pass  # back to the class attribute
    return single, loop


def _assert_same_output(single, loop, domains):
    assert list(single.preds) == [f"d{d}" for d in sorted(set(domains))]
    assert set(single.preds) == set(loop.preds)
    for task, logits in loop.preds.items():
        d = int(task[1:])
        assert single.preds[task].shape == (domains.count(d), CLASSES[d], 64, 64)
        torch.testing.assert_close(single.preds[task], logits, rtol=1e-5, atol=1e-5)
    assert set(single.aux) == set(loop.aux)
    for k, v in loop.aux.items():
        assert single.aux[k].shape == v.shape and single.aux[k].shape[0] == len(domains)
        torch.testing.assert_close(single.aux[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("method", "over"), CASES, ids=IDS)
def test_single_pass_equals_per_domain_loop_in_eval(method, over):
    model = _model(method, over).eval()
    for domains in (DOMAINS, (1, 1, 0), (2,)):  # also: a domain missing, a one-domain batch
        batch = _batch(domains)
        with torch.no_grad():
            single, loop = _both(model, batch)
        _assert_same_output(single, loop, list(domains))
        if method == "m4oe" and over["routing"] != "hard":
            gates = single.aux["gates"]
            # each sample's gates are its own: they differ between samples, so a wrong order would show
            assert len(domains) == 1 or (gates[0] - gates[-1]).abs().max() > 1e-3
    # within a domain, rows keep their batch order: each sample alone gives its own logits and gates
    batch = _batch()
    with torch.no_grad():
        single = model(batch)
        seen = dict.fromkeys(range(len(CLASSES)), 0)
        for i, d in enumerate(DOMAINS):
            logits, aux = model.predict_logits(batch["inputs"]["image"][i:i + 1], d)
            torch.testing.assert_close(single.preds[f"d{d}"][seen[d]], logits[0], rtol=1e-5, atol=1e-5)
            for k, v in aux.items():
                torch.testing.assert_close(single.aux[k][i], v[0], rtol=1e-5, atol=1e-6)
            seen[d] += 1


@pytest.mark.parametrize(("method", "over"), CASES, ids=IDS)
def test_single_pass_equals_per_domain_loop_in_training(method, over):
    batch = _batch()
    results = []
    for single_pass in (True, False):
        model = _model(method, over).train()
        model.single_pass = single_pass
        out = model(batch)
        loss, parts = model.loss(out, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), {k: float(v.detach()) for k, v in parts.items()}, grads))
    (loss1, parts1, g1), (loss2, parts2, g2) = results
    torch.testing.assert_close(loss1, loss2, rtol=1e-5, atol=1e-6)
    assert parts1 == pytest.approx(parts2, rel=1e-5, abs=1e-6)
    assert set(g1) == set(g2) and g1
    for n in g2:
        torch.testing.assert_close(g1[n], g2[n], rtol=1e-4, atol=1e-6, msg=n)


def test_only_shared_network_methods_are_single_pass():
    single = {name for name in ("m4oe", "swinunet-joint", "swinunet", "unet", "unet-late", "unet3d")
              if parse_method(name)[0].single_pass}
    assert single == {"m4oe", "swinunet-joint"}


def test_predict_logits_still_scores_one_domain():
    """The per-domain entry point (sliding-window evaluation uses it) equals the batch's rows."""
    model = _model("m4oe", {"routing": "gated"}).eval()
    batch = _batch()
    x, domain = batch["inputs"]["image"], batch["domain"]
    with torch.no_grad():
        preds, aux = model.predict_batch(x, domain)
        for d in range(len(CLASSES)):
            rows = (domain == d).nonzero(as_tuple=True)[0]
            logits, one_aux = model.predict_logits(x[rows], d)
            torch.testing.assert_close(logits, preds[f"d{d}"], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(one_aux["gates"], aux["gates"][rows], rtol=1e-5, atol=1e-6)


def test_network_per_sample_logits_follow_batch_order():
    """``SwinUNetOutput.logits`` (per sample) is built from ``domain_logits`` in batch order."""
    model = _model("m4oe", {"routing": "hard"}).eval()
    batch = _batch()
    with torch.no_grad():
        out = model.net(batch["inputs"]["image"], batch["domain"])
    seen = dict.fromkeys(range(len(CLASSES)), 0)
    for i, d in enumerate(DOMAINS):
        assert out.logits[i] is not None and out.logits[i].shape == (CLASSES[d], 64, 64)
        torch.testing.assert_close(out.logits[i], out.domain_logits[d][seen[d]], rtol=0, atol=0)
        seen[d] += 1
