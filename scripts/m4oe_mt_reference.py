"""Run the authors' released M4oE-MT code on the case of tests/m4oe_mt_case.py and write the numbers
that tests/test_m4oe_mt_code.py compares the harness against (docs/m4oe-mt.md "Checked against
the released code").

    python scripts/m4oe_mt_reference.py --authors /path/to/m4oe [--out tests/fixtures/m4oe_mt_code_reference.json]

``--authors``: a checkout of github tangzhengxu2001/m4oe, or its bare git directory (files are
then read with ``git show HEAD:<path>``). Nothing of the authors' code is copied into this
repository; only the numbers it gives are stored. What the released code lacks is stood in:

- ``my_timm`` (not released): ``Block`` is timm's ``Block``; ``BlockMet3`` (the MToE block) is
  timm's ``Block`` whose MLP returns the three task outputs and the MI loss, each task getting
  ``x + output`` (the residual form of every other block);
- ``transformers.ViTModel.from_pretrained`` (a download): a module returning the given tokens as
  ``last_hidden_state``, so the comparison starts downstream of the encoders;
- ``proj1/proj2/proj7`` are ``Linear(768, embed_dim)`` in the code, i.e. (d, d) at its width 768;
  at the case's width they are made ``Linear(d, d)``.

With ``--params`` it also counts the parameters of the authors' model at the paper configuration
(main.py: 128 MToE experts, depth 2, 8 heads, width 768, four ViT-B/16 encoders) on the meta
device, with the harness's synthetic-mvmt class counts, and those its forward never uses; this
needs ``transformers`` installed (the encoders are built from ``ViTConfig()``, not downloaded).
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import m4oe_mt_case as case  # noqa: E402


def _read(authors: Path, rel: str) -> str:
    if (authors / rel).is_file():
        return (authors / rel).read_text()
    return subprocess.run(["git", "--git-dir", str(authors), "show", f"HEAD:{rel}"], check=True,
                          capture_output=True, text=True).stdout


class _GivenTokens(nn.Module):
    """Stands in for a pretrained ViTModel: its output is the tokens it is given."""

    def forward(self, x):
        return types.SimpleNamespace(last_hidden_state=x)


def _install_stubs(real_vit: bool) -> None:
    from timm.models import vision_transformer as tvt

    class BlockMet3(tvt.Block):
        def forward(self, x):
            x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
            y1, y2, y3, tc = self.mlp(self.norm2(x))
            return (x + self.drop_path2(self.ls2(y1)), x + self.drop_path2(self.ls2(y2)),
                    x + self.drop_path2(self.ls2(y3)), tc)

    mod = types.ModuleType("my_timm.models.vision_transformer")
    mod.Block, mod.BlockMet3, mod.BlockMet_all = tvt.Block, BlockMet3, tvt.Block
    mod._load_weights, mod.get_init_weights_vit, mod.init_weights_vit_timm = (
        tvt._load_weights, tvt.get_init_weights_vit, tvt.init_weights_vit_timm)
    sys.modules.update({"my_timm": types.ModuleType("my_timm"), "my_timm.models": types.ModuleType("my_timm.models"),
                        "my_timm.models.vision_transformer": mod})
    if real_vit:
        from transformers import ViTConfig, ViTModel

        ViTModel.from_pretrained = classmethod(lambda cls, name: cls(ViTConfig()))  # ViT-B/16 shape, no download
        return
    tf = types.ModuleType("transformers")

    class ViTModel:  # noqa: D401 - a stand-in with the one classmethod the code calls
        @classmethod
        def from_pretrained(cls, name):
            return _GivenTokens()

    tf.ViTModel = ViTModel
    sys.modules["transformers"] = tf


def load_authors(authors: Path, real_vit: bool = False) -> tuple[types.ModuleType, type]:
    _install_stubs(real_vit)
    models = types.ModuleType("authors_models_m4oe")
    exec(compile(_read(authors, "models/models_m4oe.py"), "models_m4oe.py", "exec"), models.__dict__)
    # main.py itself does not parse (``np.array([#REPLACE WITH THE CLASS DISTRIBUTION])``): take the
    # class's lines, from ``class FocalLoss`` to the next top-level statement
    lines = _read(authors, "main.py").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class FocalLoss"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "\t"))
    focal = ast.parse("\n".join(lines[start:end]))
    ns = {"torch": torch, "nn": nn, "F": torch.nn.functional, "Variable": torch.autograd.Variable}
    exec(compile(focal, "main.py", "exec"), ns)
    return models, ns["FocalLoss"]


# ---------------------------------------------------------------------------------- copying
def _copy_soft_moe(src, dst, tasks: int = 0) -> None:
    """Harness SoftMoE -> the authors' SoftMoELayerWrapper(MET): phi (d, E*S) -> (d, E, S), stacked
    expert weights -> per-expert Linear layers (transposed), task embeddings -> task_embedding{k}."""
    with torch.no_grad():
        dst.phi.copy_(src.phi.view_as(dst.phi))
        dst.scale.copy_(src.scale.reshape(1))
        for e, expert in enumerate(dst.experts):
            expert.fc1.weight.copy_(src.mlps.w1[e].T)
            expert.fc1.bias.copy_(src.mlps.b1[e])
            expert.fc2.weight.copy_(src.mlps.w2[e].T)
            expert.fc2.bias.copy_(src.mlps.b2[e])
        for k in range(tasks):
            getattr(dst, f"task_embedding{k + 1}").copy_(src.task_embed[k])


def _copy_block(src, dst, tasks: int = 0) -> None:
    with torch.no_grad():
        for name in ("norm1", "norm2", "attn.qkv", "attn.proj"):
            a, b = src.get_submodule(name), dst.get_submodule(name)
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
    _copy_soft_moe(src.ffn if hasattr(src, "ffn") else src.moe, dst.mlp, tasks)


def _copy_linear(src, dst) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)


def _nested(t: torch.Tensor):
    return t.detach().double().tolist()


def layer_numbers(models) -> dict:
    from timm.layers import Mlp

    from methods.nets.moe_layers import SoftMoE

    out = {}
    ours = case.fill(SoftMoE(case.DIM, 4, 2, hidden=16, router="l2", slot_input="normalized"), 11)
    theirs = models.SoftMoELayerWrapper(dim=case.DIM, num_experts=4, slots_per_expert=2, layer=Mlp,
                                        in_features=case.DIM, hidden_features=16).double()
    _copy_soft_moe(ours, theirs)
    out["soft_moe"] = {"output": _nested(theirs(case.layer_input(12)))}
    ours = case.fill(SoftMoE(case.DIM, 4, 3, hidden=16, router="l2", tasks=3, slot_input="normalized",
                             combine="joint"), 13)
    theirs = models.SoftMoELayerWrapperMET(dim=case.DIM, num_experts=4, slots_per_expert=3, layer=Mlp,
                                           in_features=case.DIM, hidden_features=16).double()
    _copy_soft_moe(ours, theirs, tasks=3)
    y1, y2, y3, tc = theirs(case.layer_input(14))
    out["mtoe_layer"] = {"outputs": [_nested(y) for y in (y1, y2, y3)], "tc_loss": float(tc)}
    return out


def model_numbers(models, focal_cls) -> dict:
    ours = case.model(variant="code")
    theirs = models.SoftMoEVisionTransformer(
        num_experts=case.MTOE_EXPERTS, slots_per_expert=1, moe_layer_index=0, img_size=16, patch_size=4,
        num_classes_1=case.TASKS[0][1], num_classes_3=case.TASKS[1][1], num_classes_2=case.TASKS[2][1],
        embed_dim=case.DIM, depth=case.DEPTH, num_heads=case.HEADS, mlp_ratio=4)
    for k in ("proj1", "proj2", "proj7"):  # Linear(768, embed_dim) in the code: (d, d) at its width
        setattr(theirs, k, nn.Linear(case.DIM, case.DIM))
    theirs.double().train()
    for i, v in enumerate(case.VIEWS):
        for layer in range(case.DEPTH):
            _copy_block(ours.msoe[v][layer], getattr(theirs, f"blocks{i + 1}")[layer])
    _copy_block(ours.mtoe, theirs.blocks[0], tasks=3)
    for layer in range(case.DEPTH):
        _copy_block(ours.fusion[layer], theirs.blocks5[layer])
    for (name, _, _), norm, proj, head in zip(case.TASKS, ("norm1", "norm2", "norm3"), ("proj1", "proj2", "proj7"),
                                              ("head1", "head2", "head7")):
        _copy_linear(ours.fusion_norms[name], getattr(theirs, norm))
        _copy_linear(ours.fusion_projs[name], getattr(theirs, proj))
        _copy_linear(ours.heads[name], getattr(theirs, head))
    x = case.tokens()
    o1, o3, o2, tc = theirs(tuple(x[v] for v in case.VIEWS))
    labels = [torch.tensor(case.LABELS[n]) for n, _, _ in case.TASKS]
    valid = (labels[0] >= 0) & (labels[1] >= 0) & (labels[2] >= 0)  # main.py's valid_idx
    focal = {}
    for (name, _, counts), logits, y in zip(case.TASKS, (o1, o3, o2), labels):
        dist = torch.tensor(counts, dtype=torch.float64)
        crit = focal_cls(gamma=2, alpha=(1 - dist / dist.sum()).float())
        focal[name] = float(crit(logits[valid], y[valid]))
    return {"logits": {n: _nested(o) for (n, _, _), o in zip(case.TASKS, (o1, o3, o2))}, "focal": focal,
            "tc_loss": float(tc)}


def param_counts(models) -> dict:
    """The authors' model at main.py's configuration on the meta device, and the parameters its
    outputs do not depend on (no gradient after a backward pass from the logits and the MI term)."""
    linspace = torch.linspace  # the constructor reads drop-path rates with .item(): keep those on the CPU
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with torch.device("meta"):
            net = models.SoftMoEVisionTransformer(num_experts=128, slots_per_expert=1, moe_layer_index=0, img_size=224,
                                                  patch_size=16, num_classes_1=3, num_classes_3=3, num_classes_2=2,
                                                  embed_dim=768, depth=2, num_heads=8, mlp_ratio=4)
    finally:
        torch.linspace = linspace
    with torch.device("meta"):  # the forward and backward on meta tensors: shapes only, nothing allocated
        o1, o3, o2, tc = net(tuple(torch.empty(1, 3, 224, 224) for _ in range(4)))
        (o1.sum() + o3.sum() + o2.sum() + tc).backward()
    # unused = no gradient from the three task logits or the MI term (e.g. the pooler ViTModel computes
    # and the code discards, the patch embeddings and positions of the code's own ViT stem)
    unused = {n: p.numel() for n, p in net.named_parameters() if p.grad is None}
    groups: dict[str, int] = {}
    for n, k in unused.items():
        key = ".".join(n.split(".")[:2]) if n.startswith("vit_") else n.split(".")[0]
        groups[key] = groups.get(key, 0) + k
    return {"total": sum(p.numel() for p in net.parameters()), "unused": groups, "unused_total": sum(unused.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--authors", type=Path, required=True, help="checkout (or bare git dir) of tangzhengxu2001/m4oe")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "m4oe_mt_code_reference.json")
    ap.add_argument("--params", action="store_true", help="also count the paper-size model's parameters (needs transformers)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    models, focal_cls = load_authors(args.authors)
    numbers = {"source": "github tangzhengxu2001/m4oe models/models_m4oe.py + main.py FocalLoss, "
                         "run by scripts/m4oe_mt_reference.py on tests/m4oe_mt_case.py",
               **layer_numbers(models), "model": model_numbers(models, focal_cls)}
    if args.params:
        for name in [m for m in sys.modules if m == "transformers" or m.startswith("my_timm")]:
            del sys.modules[name]
        models, _ = load_authors(args.authors, real_vit=True)
        numbers["paper_params"] = param_counts(models)
    args.out.write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
