"""What each method hparam means: one short plain-English line per name, for ``bench list methods``.

Data only (it imports nothing, so listing never loads torch or a method module). ``MEANINGS`` holds
the line of every hparam name, used by every method that declares it; ``METHOD_MEANINGS`` overrides
it per method where the shared line would be wrong or too vague for that method. The allowed
values are not repeated here: they come from the validation rules (``methods.hparam_rules``).
Sources: the modules that read each key (``methods/*.py``, ``methods/nets/*.py``) and
docs/methods.md, docs/m4oe-mt.md, docs/segmentation.md.
"""
from __future__ import annotations

MEANINGS: dict[str, str] = {
    # shared encoders (nets/encoders.py) and fusion backbones (nets/backbones.py, blocks.py, moe_layers.py)
    "modality": "the one modality whose encoder the model uses (set by the name: single:<modality>)",
    "hidden": "width d of the encoders' output tokens and of the fusion layers after them",
    "layers": "encoder depth: MLP blocks for vector and sequence inputs, ViT depth with image_encoder=vit (CNN: unused)",
    "dropout": "dropout rate in the encoders and the fusion layers (attention, MLPs, expert MLPs)",
    "image_encoder": "encoder of 2-D image modalities: cnn = small conv net, a token per grid cell; vit = ViT from scratch",
    "heads": "attention heads of the fusion transformer blocks and ViT encoders (the largest divisor of hidden is used)",
    "fusion_layers": "number of transformer blocks in the fusion backbone",
    "match_params": "true = widen hidden until the model has about the parameter count of I2MoE wrapping its backbone",
    "weights": "how late fusion mixes the per-modality predictions: mean over present modalities, or learned softmax",
    "num_experts": "number of expert MLPs in every MoE feed-forward layer",
    "top_k": "experts each token is routed to by the switch router and mixed by their gates; 1 = Switch Transformer",
    "aux_weight": "weight of the Switch load-balancing loss, added to the task loss with its gradient",
    "slots": "Soft-MoE slots per expert; each slot is a softmax-weighted mix of the tokens",
    # i2moe (methods/i2moe.py)
    "backbone": "fusion backbone that each of the M+2 interaction experts is a copy of",
    "lambda_int": "weight of the interaction loss (mean over experts) added to the task loss",
    "temperature": "softmax temperature of the gate's expert weights; higher = closer to uniform",
    "gate_layers": "number of Linear layers in the reweighting MLP (ReLU + dropout between them)",
    "gate_dropout": "dropout rate between the reweighting MLP's layers",
    "margin": "margin of the uniqueness experts' triplet loss",
    "interaction_loss": "false = no interaction loss and no perturbed passes (same experts and gate)",
    "uniform_weights": "true = every expert weighted 1/K instead of by the reweighting MLP",
    "perturb": "what replaces a perturbed modality's tokens: noise = fresh N(0, 1), zero, mean = batch-mean embedding",
    "loss_space": "what the interaction losses compare: logits = task outputs, latent = the backbone's pre-head vector",
    "num_perturb": "modalities perturbed per training step, a random subset; 0 = every modality",
    "expert_init": "independent = each expert its own initialisation; shared = copies of one (reference)",
    "attn_residual": "true = x + attn(norm(x)); false = the reference's a + dropout(a), no residual around attention",
    "readout": "transformer readout: cls = CLS token after a final LayerNorm; mean = per-modality mean pools concatenated",
    "pos_init": "start of the learned position embeddings: normal = N(0, 0.02^2), zero (reference)",
    "qkv_bias": "bias on the attention query/key/value projection (false = the reference)",
    "regression_int_loss": "interaction losses when all tasks regress: bounded = distance-based, mse = reference MSE terms",
    "regression_task_loss": "regression task loss: mse in standardised units, or smooth-l1 in original units (reference)",
    "latent_grad": "false = detach the latents of loss_space=latent losses (reference: the ablation does nothing)",
    "load_balance_grad": "false = detach a moe backbone's load-balancing loss (reference)",
    "reference_compat": "true = every behaviour of the authors' released code at once (sets the reference flags)",
    "impl": "how experts run: batched = vmap or per-expert by device and size, vmap, per-expert, loop (reference oracle)",
    # m4oe-mt (methods/m4oe_mt.py, docs/m4oe-mt.md)
    "sizes": "per-method preset sizes the presets apply (m4oe-mt: ViT-B/16 size at paper, CNN CPU sizes at tiny/small)",
    "encoder_heads": "attention heads of the ViT image encoders; 0 = heads",
    "msoe": "modality-specific Soft-MoE branch (per-view blocks); false = the without-MSoE ablation",
    "mtoe": "modality-task Soft-MoE branch with task slots; false = a learned per-task token instead",
    "msoe_layers": "MSoE blocks per view",
    "msoe_experts": "experts in each MSoE block's Soft-MoE",
    "mtoe_experts": "experts in the MToE's Soft-MoE (each has one slot per task)",
    "fusion_experts": "experts in each fusion block's Soft-MoE",
    "router": "MoE layer type: soft = Soft-MoE; topk = top-k switch MoE with load balancing in every MoE position",
    "soft_router": "Soft-MoE router: l2 = the paper's L2-normalised router, layernorm = LayerNorm(x) @ Phi",
    "alpha": "weight of the mutual-information term, maximised in training; 0 = no MI (as the released main.py)",
    "mi_variant": "MI estimate: paper = I(M;E|T) of the MToE routing; code = released per-sample I(token; task slot)",
    "gamma": "focusing exponent of the focal loss of classification tasks; 0 = no focusing (class-weighted CE)",
    "class_weighting": "weight each class by 1 - its frequency among the labelled training rows in the focal loss",
    "seg_skip": "segmentation decoder input: msoe = MToE tokens of the view + its MSoE tokens; none = MToE only",
    "variant": "paper = the paper's text; code = the released model and loss (overrides the item flags and dropout)",
    "slot_input": "what the Soft-MoE slots mix: normalized = the L2-normalised tokens (code), raw = tokens as given",
    "mtoe_combine": "MToE combine softmax: per-task = within each task's slots; joint = over all tasks' slots (code)",
    "fusion_head": "post-fusion LayerNorm + Linear: per-task = one per task (code), shared = one for all tasks",
    "norm_eps": "epsilon of the LayerNorms in the MSoE, MToE and fusion blocks and the post-fusion norm",
    "focal_norm": "focal loss divisor: samples = number of rows (code), weights = sum of the rows' class weights",
    "label_mask": "per-task = a row counts where that task's label exists; all = only where every classification label exists",
    "encoder_cls": "keep the class token of m4oe-mt's own ViT encoders (image_encoder=vit, patch_size > 0)",
    # segmentation loss (methods/seg_base.py)
    "ce_weight": "weight of the cross-entropy term of the segmentation loss",
    "dice_weight": "weight of the soft-Dice term of the segmentation loss (the reference trains with 0.7)",
    "loss_granularity": "sample = CE and Dice per sample, then averaged; group = sums pooled over each domain group",
    # 2-D slices, Swin-UNet (methods/swinunet.py, nets/swin_unet.py) and m4oe (methods/m4oe.py)
    "img_size": "side in pixels that 2-D slices are resized to, in training and inference",
    "patch_size": "patch embedding size in pixels (conv kernel and stride); the final expand upsamples by it",
    "embed_dim": "channel width C of the first Swin stage; it doubles at each later stage",
    "depths": "Swin blocks per encoder stage; the decoder stages mirror them",
    "num_heads": "attention heads of each Swin stage, one entry per stage",
    "window_size": "side of the attention windows in tokens; a stage no larger than it uses one unshifted window",
    "mlp_ratio": "hidden width of each Swin block's FFN (or experts) as a multiple of the stage width",
    "drop_path": "stochastic-depth rate, rising linearly from 0 to this over the encoder blocks (decoder stages mirror them)",
    "repeat_channels": "times each input channel is repeated before the patch embedding (3 = the reference's input)",
    "routing": "FFN: gated = per-token expert gate, gated-code = released channel gate, hard = dataset's expert, dense = MLP",
    "moe_where": "which Swin blocks get MoE FFNs: both = all, enc = encoder and bottleneck, dec = decoder",
    "two_stage": "true = with a gated routing, train hard-routed experts first, then the gated model from their weights",
    "stage1_fraction": "share of the epochs for stage 1 (hard routing) when training in two stages",
    "reinit_heads": "re-initialise the per-dataset heads at the start of stage 2 (as the released code)",
    "freeze_experts": "freeze the expert FFN weights in stage 2",
    # U-Nets (methods/unet.py, methods/unet3d.py)
    "unet_encoder": "segmentation-models-pytorch encoder of the U-Net, built without pretrained weights",
    "unet_depth": "number of U-Net encoder stages (downsamplings)",
    "unet_decoder": "decoder channel counts of the U-Net, one per level",
    "unet3d_features": "the six channel widths of MONAI's BasicUNet",
    "patch": "3-D training patch size z,y,x, also the sliding window at inference",
}

METHOD_MEANINGS: dict[str, dict[str, str]] = {
    "early": {
        "hidden": "width of the one encoder over the fused inputs; its pooled output feeds the heads",
        "dropout": "dropout rate in the encoder (the method's only dropout)",
        "image_encoder": "encoder of the channel-stacked images when all modalities are same-size images: cnn or vit",
    },
    "single": {
        "hidden": "width of the modality's encoder; its pooled output feeds the heads",
        "dropout": "dropout rate in the encoder (the method's only dropout)",
    },
    "late": {
        "hidden": "width of each modality's encoder output, which its own heads read",
        "dropout": "dropout rate in the encoders (the heads are single Linear layers)",
    },
    "mmoe": {
        "num_experts": "number of shared expert MLPs that each task's softmax gate mixes; 1 = shared-bottom model",
    },
    "i2moe": {
        "dropout": "dropout rate in the encoders and the experts' backbones (the gate MLP uses gate_dropout)",
        "fusion_layers": "transformer blocks in each expert's backbone (attention, moe and soft-moe backbones)",
        "weights": "with backbone=late: mean over present modalities, or learned softmax weights",
        "num_experts": "expert MLPs per MoE layer of a moe, soft-moe or mmoe backbone (I2MoE always has M+2 experts)",
        "top_k": "with backbone=moe: experts each token is routed to; 1 = Switch Transformer",
        "aux_weight": "with backbone=moe: weight of its load-balancing loss",
        "slots": "with backbone=soft-moe: Soft-MoE slots per expert",
    },
    "m4oe": {
        "num_experts": "FFN experts in every MoE block; 0 = one per dataset (dataset d uses expert d)",
    },
    "m4oe-mt": {
        "heads": "attention heads of the MSoE, MToE and fusion blocks (and of ViT encoders when encoder_heads=0)",
        "fusion_layers": "number of shared fusion blocks (Soft-MoE MLPs) over each task's [MToE, MSoE views] sequence",
        "patch_size": "patch size of the ViT encoders with image_encoder=vit; 0 = the shared ViT (2 up to 16 px, else 4)",
        "mlp_ratio": "hidden width of every MoE expert MLP as a multiple of hidden",
        "top_k": "with router=topk: experts each token is routed to",
        "aux_weight": "with router=topk: weight of the switch load-balancing loss",
    },
}


def meaning(method: str, name: str) -> str:
    """What hparam ``name`` of ``method`` means: the method's override, else the shared line, else ""."""
    own = METHOD_MEANINGS.get(method, {})
    if name in own:
        return own[name]
    return MEANINGS.get(name, "")
