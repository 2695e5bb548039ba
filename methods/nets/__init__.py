"""The networks methods are built from, apart from the method wrappers that register them.

``encoders`` (the shared per-modality encoders), ``blocks`` (pre-norm transformer blocks),
``heads`` (per-task heads), ``backbones`` (the fusion backbones: early, late, intermediate,
attention, moe, soft-moe, mmoe), ``moe_layers`` (``SwitchMoE`` and the one ``SoftMoE``),
``expert_group`` (stacked expert networks), ``dense_decoder`` (tokens -> segmentation logits) and
``swin_unet`` (the Swin-UNet of M4oE and its baselines). docs/methods.md describes them.
"""
