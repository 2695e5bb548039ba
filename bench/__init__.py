"""bench: a benchmark harness for multimodal fusion and mixture-of-experts methods."""
import os

# OpenMP worker threads spin while waiting for work (GNU libgomp, which the torch CPU wheels use:
# 300,000 spins by default). As soon as another torch process competes for the cores the spinning
# threads starve each other: measured on 2 cores, a tiny Swin-UNet training step went from
# 0.024 s alone to 4.2 s with a second torch process running. A short spin keeps the alone speed
# (0.024-0.031 s) and bounds the contended case (0.08 s); passive waiting would bound it better
# (0.05 s) but doubles the alone time of small models. Set before torch loads OpenMP; an
# explicit user setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
# cuBLAS reads its workspace setting when CUDA initialises, so deterministic matmuls need it set
# before any CUDA call (docs/protocol.md "Seeds and determinism"); an explicit user setting wins.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

__version__ = "0.1.0"
