"""v2: run identity columns, purpose and suite, per-case rows in their own table, job claims.

Adds to ``runs``: ``config_id``, ``request_id``, ``label``, ``label_fields``, ``split_seed``,
``preset``, ``purpose``, ``suite``, ``code_version``, ``metrics``, ``catalogue``; moves the
per-case Parquet bytes to ``run_cases``; creates ``job_claims``. Every existing record is kept
and back-filled: its identities are computed from its stored config exactly as v2 code computes
them (the v1 key had no thread count, code or data fingerprint: the thread count comes from the
record's environment, the code version is v1's, the data fingerprint is unknown), its label from
its stored overrides, its catalogue from its metric names. The record JSON gets the same fields.

Revision ID: 0002
Revises: 0001
"""
import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# frozen as of v1: the training defaults and the datasets that used the segmentation protocol
_TRAIN_DEFAULTS = {"epochs": 40, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "optimizer": "adamw",
                   "schedule": "cosine", "patience": 10, "grad_clip": 1.0, "select": "loss", "max_steps": 0,
                   "val_every": 1, "augment": True, "fg_oversample": 0.0, "balance": "slices",
                   "eval_space": "original", "metric_compat": "nnunet"}
_SEG_DEFAULTS = {"optimizer": "sgd", "lr": 0.015, "weight_decay": 1e-4, "schedule": "poly", "batch_size": 36,
                 "patience": 7, "val_every": 2, "grad_clip": 0.0}
_SEG_EPOCHS = {"tiny": 24, "small": 40, "paper": 100}
_SEG_DATASETS = ("synthetic-organs", "nnunet", "flare22", "amos22", "atlas23", "m4oe-miccai24")

_runs = sa.table("runs", sa.column("key", sa.String), sa.column("record", sa.Text), sa.column("cases", sa.LargeBinary),
                 sa.column("config_id", sa.String), sa.column("request_id", sa.String), sa.column("label", sa.Text),
                 sa.column("label_fields", sa.Text), sa.column("split_seed", sa.Integer),
                 sa.column("preset", sa.String), sa.column("purpose", sa.String), sa.column("suite", sa.String),
                 sa.column("code_version", sa.String), sa.column("metrics", sa.Text), sa.column("catalogue", sa.Text))
_cases = sa.table("run_cases", sa.column("key", sa.String), sa.column("cases", sa.LargeBinary))


def _digest(fields: dict) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _label(method: str, fields: dict) -> str:
    preset = fields.get("preset")
    rest = {k: v for k, v in fields.items() if k != "preset"}
    text = method + (f"@{preset}" if preset else "")
    if rest:
        shown = ",".join(f"{k}={('true' if v else 'false') if isinstance(v, bool) else v}" for k, v in sorted(rest.items()))
        text += f"[{shown}]"
    return text


def backfill(rec: dict) -> dict:
    """The v2 fields of one v1 record."""
    from bench.catalogue import build_catalogue

    cfg = dict(rec.get("config") or {})
    device = str(cfg.get("device", "cpu")).split(":")[0]
    threads = (rec.get("env") or {}).get("threads") if device == "cpu" else None
    key_fields = {"method": cfg.get("method", rec["method"]), "dataset": cfg.get("dataset", rec["dataset"]),
                  "seed": cfg.get("seed", rec["seed"]), "split_seed": cfg.get("split_seed", rec.get("split_seed", 0)),
                  "preset": cfg.get("preset", rec.get("preset")), "hparams": cfg.get("hparams", {}),
                  "train": cfg.get("train", {}), "device": device, "deterministic": cfg.get("deterministic", True),
                  "threads": threads, "code_version": rec.get("code_version", ""), "data": None}
    preset = key_fields["preset"]
    seg = rec["dataset"].split(":")[0] in _SEG_DATASETS
    protocol = {**_TRAIN_DEFAULTS, **(({**_SEG_DEFAULTS, "epochs": _SEG_EPOCHS.get(preset, 40)}) if seg else {})}
    fields = {"preset": preset} if preset != "small" else {}
    fields.update((rec.get("summary") or {}).get("hparam_overrides") or {})
    fields.update({k: v for k, v in key_fields["train"].items() if k in protocol and protocol[k] != v})
    if key_fields["split_seed"]:
        fields["split_seed"] = key_fields["split_seed"]
    if device != "cpu":
        fields["device"] = cfg.get("device")
    if not key_fields["deterministic"]:
        fields["deterministic"] = False
    return {"config_id": _digest({k: v for k, v in key_fields.items() if k != "seed"}),
            "request_id": _digest({k: v for k, v in key_fields.items() if k not in ("code_version", "data")}),
            "label": _label(rec["method"], fields), "label_fields": fields, "purpose": "eval", "suite": None,
            "catalogue": build_catalogue({}, rec.get("metrics") or {}),
            "config": {**cfg, "threads": threads, "code_version": key_fields["code_version"], "data_fingerprint": None}}


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, kind in (("config_id", sa.String(64)), ("request_id", sa.String(64)), ("label", sa.Text),
                           ("label_fields", sa.Text), ("split_seed", sa.Integer), ("preset", sa.String(16)),
                           ("purpose", sa.String(16)), ("suite", sa.String(200)), ("code_version", sa.String(100)),
                           ("metrics", sa.Text), ("catalogue", sa.Text)):
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table("run_cases", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("cases", sa.LargeBinary, nullable=False))
    op.create_table("job_claims", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("owner", sa.String(300), nullable=False),
                    sa.Column("claimed_at", sa.Float, nullable=False), sa.Column("heartbeat_at", sa.Float, nullable=False))
    conn = op.get_bind()
    rows = conn.execute(sa.select(_runs.c.key, _runs.c.record, _runs.c.cases)).all()
    for key, raw, cases in rows:
        rec = json.loads(raw)
        new = backfill(rec)
        rec.update({k: v for k, v in new.items()})
        conn.execute(_runs.update().where(_runs.c.key == key).values(
            config_id=new["config_id"], request_id=new["request_id"], label=new["label"],
            label_fields=_dumps(new["label_fields"]), split_seed=rec.get("split_seed", 0), preset=rec.get("preset"),
            purpose="eval", suite=None, code_version=rec.get("code_version"), metrics=_dumps(rec.get("metrics") or {}),
            catalogue=_dumps(new["catalogue"]), record=_dumps(rec)))
        if cases is not None:
            conn.execute(_cases.insert().values(key=key, cases=cases))
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cases")
        for name in ("config_id", "request_id", "purpose", "suite"):
            batch.create_index(f"ix_runs_{name}", [name])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("cases", sa.LargeBinary, nullable=True))
    conn = op.get_bind()
    for key, cases in conn.execute(sa.select(_cases.c.key, _cases.c.cases)).all():
        conn.execute(_runs.update().where(_runs.c.key == key).values(cases=cases))
    op.drop_table("job_claims")
    op.drop_table("run_cases")
    with op.batch_alter_table("runs") as batch:
        for name in ("config_id", "request_id", "purpose", "suite"):
            batch.drop_index(f"ix_runs_{name}")
        for name in ("config_id", "request_id", "label", "label_fields", "split_seed", "preset", "purpose", "suite",
                     "code_version", "metrics", "catalogue"):
            batch.drop_column(name)
