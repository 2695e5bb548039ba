"""The non-zero crop and the CT intensity sampling stride, shared by the preprocessing
(``preprocess.py``) and the nnU-Net folder checks (``nnunet.py``) so neither imports the other."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: nnU-Net v1 keeps every 10th foreground voxel per case for the intensity statistics
CT_SAMPLE_STRIDE = 10
Crop = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def _nonzero_crop(image: np.ndarray) -> tuple[Crop, np.ndarray]:
    """Bounding box of the hole-filled union of non-zero voxels over channels, and that mask."""
    mask = ndimage.binary_fill_holes(np.any(image != 0, axis=0))
    if not mask.any():
        return tuple((0, int(s)) for s in mask.shape), np.ones(mask.shape, bool)  # type: ignore[return-value]
    box = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        box.append((int(idx[0]), int(idx[-1]) + 1))
    return tuple(box), mask  # type: ignore[return-value]
