"""Evaluating a segmentation model on full 3-D volumes (docs/protocol.md "Metrics", docs/segmentation.md).

* 2-D models predict slice-wise: every axial slice of a case is resized to the model's
  ``slice_size`` (bicubic), predicted with the case's own domain head, argmax'ed, resized back
  (nearest) and re-stacked [code]. Slices go through the model in chunks of ``batch_size``, so
  memory is bounded by one chunk whatever the volume size.
* 3-D models predict with MONAI's ``sliding_window_inference`` (patch = the training patch,
  overlap 0.5, Gaussian weighting, ``sw_batch_size`` = the batch size), as nnU-Net does.
* ``eval_space="original"`` (default) maps the prediction back to the original image grid
  (undoing resampling and cropping, ``datasets.segmentation.preprocess.to_original``) and scores it against
  the original label with the original voxel spacing [ours]; ``"preprocessed"`` scores in the
  preprocessed grid as the reference code does (ignored voxels, label -1, count as background).
* Per case and per organ: Dice, IoU, HD95 and NSD (tau 2 mm) from ``bench.seg_metrics`` with its
  convention: ``nnunet`` (default) = nnU-Net empty-mask rules, HD95 in mm (MONAI definition);
  ``m4oe`` = the reference's empty-mask rules and HD95 in voxels (medpy's ``hd95``, no spacing).
* Aggregation: per organ the mean over cases (NaN, i.e. organ absent from both, excluded), per
  domain the mean over organs (``dice``, ``hd95``, ``nsd``, ``iou``); with several domains the
  mean over domains is reported as the pseudo-task ``all``. Per-case values are returned as a
  long frame (one row per case x organ) for paired statistics.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from datasets.segmentation.data import SegmentationData, resize_image, resize_label

from .execution import to_device
from .seg_metrics import evaluate_case

EVAL_SPACES = ("original", "preprocessed")
NSD_TAU_MM = 2.0


@torch.no_grad()
def predict_case(model, data: SegmentationData, c: int, options: dict[str, Any], batch_size: int,
                 device: torch.device) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Label map (Z, Y, X) on the preprocessed grid and per-case aux (mean over slices)."""
    case, d = data.cases[c], int(data.case_domain[c])
    image = torch.from_numpy(np.array(case.image, dtype=np.float32))
    aux_sum: dict[str, torch.Tensor] = {}
    if options.get("dims", 2) == 3:
        from monai.inferers import sliding_window_inference

        roi = tuple(int(p) for p in options["patch"])
        logits = sliding_window_inference(image[None].to(device), roi, batch_size,
                                          lambda t: model.predict_logits(t, d)[0], overlap=0.5, mode="gaussian")
        return logits[0].argmax(0).cpu().numpy().astype(np.int16), {}
    size = int(options["slice_size"])
    z_count, hw = image.shape[1], tuple(image.shape[2:])
    out = np.zeros((z_count, *hw), dtype=np.int16)
    for start in range(0, z_count, batch_size):
        x = image[:, start:start + batch_size].transpose(0, 1).contiguous()   # (k, C, Y, X)
        logits, aux = model.predict_logits(resize_image(x, size).to(device), d)
        pred = resize_label(logits.argmax(1).cpu(), hw)
        out[start:start + len(x)] = pred.numpy().astype(np.int16)
        for k, v in aux.items():
            aux_sum[k] = aux_sum.get(k, 0) + v.float().sum(0).cpu()
    return out, {k: (v / z_count).numpy() for k, v in aux_sum.items()}


@torch.no_grad()
def seg_val_loss(model, data: SegmentationData, split: str, batch_size: int, device: torch.device,
                 options: dict[str, Any]) -> float:
    """Mean loss over all batches of the split, in eval mode, without augmentation [ours: the
    reference uses only the last batch and train mode]."""
    model.eval()
    losses = [float(model.loss(model(b := to_device(batch, device)), b)[0])
              for batch in data.batches(split, batch_size, **options)]
    return float(np.mean(losses))


def evaluate_cases(model, data: SegmentationData, split: str, batch_size: int, device: torch.device,
                   options: dict[str, Any], eval_space: str = "original", convention: str = "nnunet"
                   ) -> tuple[dict[str, dict[str, float]], pd.DataFrame, dict[str, np.ndarray]]:
    """Metrics per domain task, the per-case long frame, and per-case aux arrays (split order)."""
    from datasets.segmentation.preprocess import to_original

    if eval_space not in EVAL_SPACES:
        raise ValueError(f"eval_space={eval_space!r} is not one of: {', '.join(EVAL_SPACES)}")
    model.eval()
    rows, aux_rows = [], {}
    for c in data.splits[split]:
        c = int(c)
        case, d = data.cases[c], int(data.case_domain[c])
        dom = data.domains[d]
        pred, aux = predict_case(model, data, c, options, batch_size, device)
        if eval_space == "original":
            pred, ref, spacing = to_original(pred, case), np.asarray(case.original_label), case.original_spacing
        else:
            ref, spacing = np.maximum(np.asarray(case.label), 0), case.spacing
        m = evaluate_case(pred, ref, spacing, list(range(1, dom.num_classes)), tau=NSD_TAU_MM, convention=convention)
        for k in range(1, dom.num_classes):
            rows.append({"case_id": data.ids[c], "task": dom.name, "class": dom.labels[k], "dice": m.dice[k],
                         "hd95": m.hd95[k], "nsd": m.nsd[k], "iou": m.iou[k], "pred_voxels": m.pred_voxels[k],
                         "ref_voxels": m.ref_voxels[k]})
        for k, v in aux.items():
            aux_rows.setdefault(k, []).append(v)
    frame = pd.DataFrame(rows)
    metrics: dict[str, dict[str, float]] = {}
    names = ("dice", "hd95", "nsd", "iou")
    for dom in data.domains:
        mine = frame[frame["task"] == dom.name]
        per_class = mine.groupby("class", sort=False)[list(names)].mean()   # pandas mean skips NaN
        out: dict[str, float] = {}
        for name in names:
            out[name] = float(np.nanmean(per_class[name])) if per_class[name].notna().any() else float("nan")
        for cls, values in per_class.iterrows():
            for name in ("dice", "hd95", "nsd"):
                out[f"{name}_{cls}"] = float(values[name])
        metrics[dom.name] = out
    if len(data.domains) > 1:
        metrics["all"] = {name: float(np.nanmean([metrics[d.name][name] for d in data.domains])) for name in names}
    aux_arrays = {k: np.stack(v) for k, v in aux_rows.items()}
    if aux_arrays:
        extra = pd.DataFrame({"case_id": [data.ids[int(c)] for c in data.splits[split]]})
        for k, v in aux_arrays.items():
            extra[f"aux_{k}"] = v.reshape(len(v), -1).tolist()
        frame = frame.merge(extra, on="case_id", how="left")
    return metrics, frame, aux_arrays
