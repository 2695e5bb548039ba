"""``bench data convert``: official FLARE22 / AMOS22 / ATLAS23 layouts -> nnU-Net v2 raw folders.

Why: every other tool (nnU-Net itself, ``bench data check``, ``--dataset nnunet:PATH``) speaks the
nnU-Net v2 raw layout, while the challenges ship their own. Converting once gives users a folder
they can validate and share between tools; the adapters in ``seg_sources.py`` read the official
layouts directly, so conversion is a convenience, never a requirement.

What is written [ours where noted]:

* One folder per source: ``flare22`` -> ``Dataset722_FLARE22``; ``amos22`` -> two folders,
  ``Dataset723_AMOS22CT`` (ids <= 500) and ``Dataset724_AMOS22MR`` (ids > 500), because one nnU-Net
  dataset has one channel meaning and AMOS mixes CT and MRI; ``atlas23`` -> ``Dataset725_ATLAS23``.
  The ids 722-725 are ours (nnU-Net reserves no ids for these). ``amos22-ct`` / ``amos22-mr`` convert
  one part only; for ``amos22`` a part with no cases is skipped, and only when both are absent is
  :class:`DatasetNotFound` raised.
* ``imagesTr/<case>_0000<ending>`` and ``labelsTr/<case><ending>`` with the adapter's case ids
  (``FLARE22_Tr_0001``, ``amos_0001``, ``atlas23_0000``); AMOS Tr and Va cases both go to
  ``imagesTr`` (both are labelled).
* ``dataset.json``: ``channel_names`` (``{"0": "CT"}``, ``{"0": "MR"}`` or ``{"0": "CE-T1"}``),
  ``labels`` (name -> value, the releases' label maps), ``numTraining``, ``file_ending`` (``.nii.gz``
  as released; a mix of endings in one source is refused).
* Files are hard-linked when ``link`` (default) and the file system allows it, else copied with
  metadata (``shutil.copy2``); no voxel is read or rewritten, so conversion is fast and exact. A hard
  link shares the input's bytes: *editing* an output file in place would edit the input too, which
  is why nothing in bench ever writes into a dataset folder (pass ``link=False`` for independent
  copies).
* Inputs are never modified. An existing non-empty output folder is refused with a one-line
  :class:`DatasetFormatError` (never overwritten or merged). Each folder is assembled in a hidden
  temporary sibling and renamed into place, so an interrupted conversion leaves no half dataset.

The result passes :func:`datasets.segmentation.nnunet.check_dataset` (not run here: it reads every voxel; run
``bench data check`` on the output) and reads back with :func:`datasets.segmentation.sources.nnunet_source`.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..spec import DatasetFormatError, DatasetNotFound
from .nnunet import write_dataset_json
from .sources import SegSource, amos22_source, atlas23_source, flare22_source

__all__ = ["CONVERTIBLE", "OUTPUT_FOLDERS", "convert_to_nnunet", "convert_source"]

OUTPUT_FOLDERS = {
    "flare22": "Dataset722_FLARE22",
    "amos22-ct": "Dataset723_AMOS22CT",
    "amos22-mr": "Dataset724_AMOS22MR",
    "atlas23": "Dataset725_ATLAS23",
}
CONVERTIBLE = ("flare22", "amos22", "amos22-ct", "amos22-mr", "atlas23")


def _ending(p: Path) -> str:
    return ".nii.gz" if p.name.endswith(".nii.gz") else ".nii"


def _place(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # other file system, or links not allowed: copy instead
    shutil.copy2(src, dst)


def _check_out(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise DatasetFormatError(f"{folder}: output folder already exists and is not empty; "
                                 "choose another --out or remove it first (conversion never overwrites)")


def convert_source(source: SegSource, out_folder: str | os.PathLike, *, link: bool = True) -> Path:
    """Write one :class:`SegSource` as an nnU-Net v2 raw folder ``out_folder``; returns it."""
    out_folder = Path(out_folder)
    _check_out(out_folder)
    endings = {_ending(p) for p in source.files}
    if len(endings) != 1:
        raise DatasetFormatError(f"{source.root}: {source.name} mixes file endings {sorted(endings)}; "
                                 "nnU-Net needs one file_ending per dataset")
    ending = endings.pop()
    if len(source.channels) != 1:
        raise DatasetFormatError(f"{source.root}: {source.name} has {len(source.channels)} channels; "
                                 "only single-channel official layouts are converted")
    out_folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_folder.parent / f".tmp-{out_folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "imagesTr").mkdir(parents=True)
        (tmp / "labelsTr").mkdir()
        for case in source.cases:
            for ch, img in enumerate(case.images):
                _place(img, tmp / "imagesTr" / f"{case.case_id}_{ch:04d}{ending}", link)
            if case.label is not None:
                _place(case.label, tmp / "labelsTr" / f"{case.case_id}{ending}", link)
        write_dataset_json(tmp, dict(enumerate(source.channels)), {n: i for i, n in source.labels.items()},
                           len(source.cases), ending)
        if out_folder.exists():  # an empty folder may be replaced
            out_folder.rmdir()
        os.rename(tmp, out_folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_folder


def convert_to_nnunet(name: str, data_root: str | os.PathLike | None, out_dir: str | os.PathLike, *,
                      link: bool = True) -> list[Path]:
    """Convert the official layout of ``name`` under ``data_root`` into ``out_dir/DatasetNNN_Name`` folder(s).

    ``name``: ``flare22``, ``amos22`` (CT and MR folders), ``amos22-ct``, ``amos22-mr`` or ``atlas23``.
    Returns the folders written. Raises :class:`DatasetNotFound` when the data is absent and
    :class:`DatasetFormatError` for malformed input or an existing non-empty output folder.
    """
    if name not in CONVERTIBLE:
        raise ValueError(f"cannot convert {name!r}; choose one of: {', '.join(CONVERTIBLE)}")
    out_dir = Path(out_dir)
    if name == "flare22":
        sources = [flare22_source(data_root)]
    elif name == "atlas23":
        sources = [atlas23_source(data_root)]
    elif name in ("amos22-ct", "amos22-mr"):
        sources = [amos22_source(data_root, name[-2:])]
    else:
        sources, missing = [], []
        for part in ("ct", "mr"):
            try:
                sources.append(amos22_source(data_root, part))
            except DatasetNotFound as e:
                missing.append(e)
        if not sources:
            raise missing[0]
    for s in sources:  # refuse before writing anything
        _check_out(out_dir / OUTPUT_FOLDERS[s.name])
    return [convert_source(s, out_dir / OUTPUT_FOLDERS[s.name], link=link) for s in sources]
