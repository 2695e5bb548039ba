"""The named choices of method hparams, as plain tuples: the validation rules
(``methods.hparam_rules``) and the modules that act on them both read them here, so the rules
need no method module (and no torch) and a choice is spelled once."""
from __future__ import annotations

#: fusion backbones (methods/nets/backbones.py ``BACKBONES``, I2MoE's ``backbone``)
BACKBONE_NAMES = ("intermediate", "early", "late", "attention", "moe", "soft-moe", "mmoe")
#: transformer readouts and position-embedding inits (methods/nets/backbones.py)
READOUTS = ("cls", "mean")
POS_INITS = ("normal", "zero")
#: I2MoE (methods/i2moe.py): regression interaction-loss forms and task losses, and its other choices
REGRESSION_INT_LOSSES = ("bounded", "mse")
REGRESSION_TASK_LOSSES = ("mse", "smooth-l1")
I2MOE_CHOICES = {"backbone": BACKBONE_NAMES, "perturb": ("noise", "zero", "mean"), "loss_space": ("logits", "latent"),
                 "expert_init": ("independent", "shared"), "impl": ("batched", "vmap", "per-expert", "loop"),
                 "readout": READOUTS, "pos_init": POS_INITS, "regression_int_loss": REGRESSION_INT_LOSSES,
                 "regression_task_loss": REGRESSION_TASK_LOSSES}
#: M4oE's Swin-UNet MoE (methods/nets/swin_unet.py): routing forms and where the MoE sits
ROUTINGS = ("hard", "gated", "gated-code", "dense")
MOE_WHERE = ("enc", "dec", "both")
