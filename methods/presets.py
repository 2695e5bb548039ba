"""Model-size presets shared by every method so sizes are comparable across methods.

``tiny`` is for CPU tests (seconds), ``small`` for the quick suite on a laptop CPU (minutes),
``paper`` is the width used in the papers' settings (I2MoE: 256 hidden, 16 tokens). A preset
only sets hparams the method declares in ``defaults()``; ``--set`` overrides win over presets.
"""
from __future__ import annotations

_FUSION = {
    "tiny": {"hidden": 16, "layers": 1, "heads": 2, "dropout": 0.0},
    "small": {"hidden": 32, "layers": 1, "heads": 4, "dropout": 0.1},
    "paper": {"hidden": 256, "layers": 2, "heads": 8, "dropout": 0.1},
}
#: Segmentation models (docs/segmentation.md): Swin-UNet knobs (paper = the reference's 224/96/[2,2,2,2]/
#: [3,6,12,24]/window 7; tiny = a CPU size that trains in minutes), the smp U-Net (paper = smp's default U-Net
#: with a ResNet-34 encoder), and the MONAI 3-D U-Net proxy (paper = BasicUNet's default widths).
_SEGMENTATION = {
    "tiny": {"img_size": 64, "embed_dim": 24, "depths": "1,1,1,1", "num_heads": "1,2,4,8", "window_size": 4,
             "drop_path": 0.0, "unet_encoder": "resnet18", "unet_depth": 3, "unet_decoder": "32,16,8",
             "unet3d_features": "8,8,16,32,64,8", "patch": "16,48,48"},
    "small": {"img_size": 64, "embed_dim": 48, "depths": "2,2,2,2", "num_heads": "2,4,8,16", "window_size": 4,
              "drop_path": 0.1, "unet_encoder": "resnet18", "unet_depth": 4, "unet_decoder": "128,64,32,16",
              "unet3d_features": "16,16,32,64,128,16", "patch": "16,64,64"},
    "paper": {"img_size": 224, "embed_dim": 96, "depths": "2,2,2,2", "num_heads": "3,6,12,24", "window_size": 7,
              "drop_path": 0.2, "unet_encoder": "resnet34", "unet_depth": 5, "unet_decoder": "256,128,64,32,16",
              "unet3d_features": "32,32,64,128,256,32", "patch": "32,128,128"},
}
PRESETS: dict[str, dict[str, object]] = {name: {**_FUSION[name], **_SEGMENTATION[name]} for name in _FUSION}
#: Per-method sizes, applied over the shared preset when a method's defaults carry ``"sizes": <family>``
#: (so ``paper`` can mean that paper's sizes without changing any other method). ``m4oe-mt``: paper =
#: ViT-B/16 encoders (d 768, depth 12, 12 heads), MSoE 2 blocks x 32 experts, MToE 128 experts, fusion
#: 2 blocks x 16 experts, MLP ratio 4 (docs/m4oe-mt.md); tiny/small are CPU sizes with the harness's
#: shared CNN image encoder, the one every other method uses at these presets: a ViT trained from
#: scratch on the small embedded images does not learn (measured on synthetic-mvmt, small, 20
#: epochs, seed 0: task_a accuracy 0.41 with ViT vs 0.94 with the CNN for m4oe-mt; attention 0.64
#: with ViT vs about 0.94 with the CNN), so a ViT there would compare encoders, not fusion.
METHOD_PRESETS: dict[str, dict[str, dict[str, object]]] = {
    "m4oe-mt": {
        "tiny": {"image_encoder": "cnn", "hidden": 16, "layers": 1, "heads": 2, "encoder_heads": 2, "patch_size": 4,
                 "msoe_experts": 4,
                 "mtoe_experts": 4, "fusion_experts": 2, "mlp_ratio": 2.0, "dropout": 0.0},
        "small": {"image_encoder": "cnn", "hidden": 32, "layers": 1, "heads": 4, "encoder_heads": 4, "patch_size": 4,
                  "msoe_experts": 8,
                  "mtoe_experts": 16, "fusion_experts": 4, "mlp_ratio": 4.0, "dropout": 0.1},
        "paper": {"image_encoder": "vit", "hidden": 768, "layers": 12, "heads": 8, "encoder_heads": 12, "patch_size": 16,
                  "msoe_experts": 32,
                  "mtoe_experts": 128, "fusion_experts": 16, "mlp_ratio": 4.0, "dropout": 0.0},  # dropout: the code's 0
    },
}


def resolve_hparams(defaults: dict, preset: str, overrides: dict) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    out = dict(defaults)
    sizes = {**PRESETS[preset], **METHOD_PRESETS.get(str(defaults.get("sizes", "")), {}).get(preset, {})}
    out.update({k: v for k, v in sizes.items() if k in defaults})
    out.update(overrides)
    return out
