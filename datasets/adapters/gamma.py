"""GAMMA (MICCAI 2021 challenge; M4oE-MT, ICLR 2025): colour fundus + 3-D OCT; glaucoma grade + optic cup.

Expected files, under ``<data root>/gamma/`` (the challenge release)::

    Glaucoma_grading/training/glaucoma_grading_training_GT.xlsx   columns data (case number),
                                                   non, early, mid_advanced (one-hot)
    Glaucoma_grading/training/multi-modality_images/<case>/<case>.jpg          fundus photo
    Glaucoma_grading/training/multi-modality_images/<case>/<case>/<n>_image.jpg  OCT B-scans
        (the release's layout; ``<case>/<case>_<n>_image.jpg`` beside the fundus is accepted too),
        ordered by the number n
    Disc_Cup_Segmentation/training/Disc_Cup_Mask/<case>.bmp   (``Disc_Cup_Masks/`` or .png accepted)
        REFUGE convention: 0 = optic cup, 128 = disc rim, 255 = background

``<case>`` is the four-digit case number (``data`` 1 -> ``0001``). Where to obtain: the GAMMA
challenge (https://gamma.grand-challenge.org/ ; Baidu AI Studio competition 90; Wu et al., Medical
Image Analysis 2023). Only the training set has labels, so only it is read. The xlsx is read with
pandas/openpyxl when installed, else with a small built-in reader (plain cells, shared or inline
strings), so no extra package is needed.

Modalities: ``fundus`` (image2d, RGB resized to ``image_size`` x ``image_size``, default 224, in
[0, 1]) and ``oct`` (volume3d (1, ``oct_depth``, ``oct_size``, ``oct_size``), default (1, 32, 224, 224):
each B-scan resized bilinearly to ``oct_size`` x ``oct_size``, then the stack resampled linearly along
the scan axis to ``oct_depth`` slices, in [0, 1]) [ours: the paper says 224 x 224 inputs only].
Tasks: ``grade`` (multiclass: non / early / mid_advanced, the one-hot column set to 1; a row with
not exactly one 1 is a problem) and, with ``with_cup=True`` (default), ``cup`` (segmentation, 2
classes, targets (N, image_size, image_size) int: 1 where the mask is < 64, i.e. the cup, resized
nearest-neighbour to the fundus resolution); cases without a mask have the cup task masked.
Split: no official labelled split, so a seeded 60/20/20 split grouped by case (one eye per case).
Everything is preprocessed once into the cache and memory-mapped (``imaging.py``).
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from ..problems import Problems
from ..registry import data_root, register_dataset
from ..spec import DatasetSpec, ModalitySpec, TaskSpec
from .common import not_found
from .imaging import cache_root, cached_stack, gray_image, resize2d, rgb_image

NAME = "gamma"
FOLDERS = ("gamma", "GAMMA")
GRADING = Path("Glaucoma_grading/training")
GT = GRADING / "glaucoma_grading_training_GT.xlsx"
IMAGES = GRADING / "multi-modality_images"
MASK_DIRS = ("Disc_Cup_Segmentation/training/Disc_Cup_Mask", "Disc_Cup_Segmentation/training/Disc_Cup_Masks")
GRADES = ("non", "early", "mid_advanced")
IMAGE_SIZE, OCT_DEPTH, OCT_SIZE = 224, 32, 224
OBTAIN = "the GAMMA challenge release (https://gamma.grand-challenge.org/, Glaucoma_grading and Disc_Cup_Segmentation)"


def _locate(root: str | None) -> Path:
    r = data_root(root)
    for folder in FOLDERS:
        base = r / folder
        missing = [str(p) for p, ok in ((GT, (base / GT).is_file()), (Path(f"{IMAGES}/"), (base / IMAGES).is_dir()))
                   if not ok]
        if not missing:
            return base
    base = next((r / f for f in FOLDERS if (r / f).is_dir()), r / FOLDERS[0])
    raise not_found(NAME, base, r, [str(GT), f"{IMAGES}/<case>/<case>.jpg"] if not (base / GT).is_file()
                    else [f"{IMAGES}/<case>/<case>.jpg"], OBTAIN)


def check(root: str | None, variant: str | None = None) -> Path:
    return _locate(root)


def _col(ref: str) -> int:
    n = 0
    for ch in re.match(r"[A-Z]+", ref).group(0):
        n = n * 26 + ord(ch) - 64
    return n - 1


def read_xlsx(path: Path) -> list[list[str]]:
    """The first worksheet of an xlsx as rows of strings (pandas/openpyxl when installed)."""
    try:
        import openpyxl  # noqa: F401
        import pandas as pd

        df = pd.read_excel(path, header=None, dtype=str).fillna("")
        return [[str(v) for v in row] for row in df.itertuples(index=False)]
    except ImportError:
        pass
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        shared = []
        if "xl/sharedStrings.xml" in names:
            for si in ElementTree.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns):
                shared.append("".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")))
        sheets = sorted(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
        sheet = "xl/worksheets/sheet1.xml" if "xl/worksheets/sheet1.xml" in names else sheets[0]
        rows = []
        for row in ElementTree.fromstring(z.read(sheet)).iter(f"{{{ns['m']}}}row"):
            cells: dict[int, str] = {}
            for k, c in enumerate(row.findall("m:c", ns)):
                j = _col(c.get("r")) if c.get("r") else k
                t, v = c.get("t"), c.find("m:v", ns)
                if t == "s" and v is not None:
                    cells[j] = shared[int(v.text)]
                elif t == "inlineStr":
                    cells[j] = "".join(x.text or "" for x in c.iter(f"{{{ns['m']}}}t"))
                else:
                    cells[j] = v.text if v is not None and v.text is not None else ""
            rows.append([cells.get(j, "") for j in range(max(cells) + 1)] if cells else [])
        return rows


def _number(v: str):
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def _cases(base: Path, problems: Problems):
    path = base / GT
    try:
        rows = read_xlsx(path)
    except Exception as e:  # noqa: BLE001
        problems.add(str(path), f"cannot be read as xlsx ({type(e).__name__}: {e})")
        return None
    if not rows:
        problems.add(str(path), "is empty")
        return None
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("data", *GRADES) if c not in header]
    if missing:
        problems.add(str(path), f"has no column {', '.join(map(repr, missing))} (columns: {', '.join(header)})")
        return None
    col = {c: header.index(c) for c in ("data", *GRADES)}
    cases, grades = [], []
    for i, row in enumerate(rows[1:], start=2):
        cell = lambda c: row[col[c]].strip() if col[c] < len(row) else ""  # noqa: E731
        if not any(v.strip() for v in row):
            continue
        num = _number(cell("data"))
        where = f"{path} row {i}"
        if num is None:
            problems.add(f"{where}, column 'data'", f"{cell('data')!r} is not a case number")
            continue
        hot = [_number(cell(g)) for g in GRADES]
        if any(h not in (0, 1) for h in hot) or sum(hot) != 1:
            problems.add(f"{where} (case {num:04d}), columns {', '.join(GRADES)}",
                         f"{[cell(g) for g in GRADES]} is not one-hot over {', '.join(GRADES)}")
            continue
        case = f"{num:04d}"
        if case in cases:
            problems.add(f"{where}, column 'data'", f"case {case} appears more than once")
            continue
        cases.append(case)
        grades.append(hot.index(1))
    return cases, grades


def oct_files(base: Path, case: str) -> list[Path]:
    folder = base / IMAGES / case
    files = [p for p in (folder / case).glob("*_image.jpg")] if (folder / case).is_dir() else []
    files = files or list(folder.glob(f"{case}_*_image.jpg"))

    def n(p: Path) -> int:
        m = re.search(r"(\d+)_image\.jpg$", p.name)
        return int(m.group(1)) if m else -1
    return sorted(files, key=n)


def mask_file(base: Path, case: str) -> Path | None:
    for d in MASK_DIRS:
        for ext in (".bmp", ".png"):
            if (base / d / f"{case}{ext}").is_file():
                return base / d / f"{case}{ext}"
    return None


def input_files(root: str | None, variant: str | None = None) -> tuple[list[Path], Path]:
    base = _locate(root)
    got = _cases(base, Problems())
    out = [base / GT]
    for case in (got[0] if got else []):
        f = base / IMAGES / case / f"{case}.jpg"
        out += ([f] if f.is_file() else []) + oct_files(base, case)
        m = mask_file(base, case)
        out += [m] if m else []
    return out, base


def modality_names(root: str | None = None, variant: str | None = None) -> list[str]:
    return ["fundus", "oct"]


def load_oct(files, depth: int, size: int) -> np.ndarray:
    import torch

    scans = np.stack([gray_image(f, size) for f in files]) / 255.0
    vol = torch.from_numpy(scans.astype(np.float32))[None, None]
    vol = torch.nn.functional.interpolate(vol, size=(depth, size, size), mode="trilinear", align_corners=False)
    return vol[0].numpy()


def load_cup(file, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(file) as im:
        raw = np.asarray(im.convert("L"), np.float32)
    return (resize2d(raw, size, nearest=True) < 64).astype(np.float32)


@register_dataset(NAME, "GAMMA glaucoma grading, fundus + OCT (M4oE-MT, ICLR 2025)", embedded=False,
                  modalities="fundus image, OCT volume", tasks="glaucoma grade (3 classes), optic cup segmentation",
                  check=check, input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None, cache_dir: str | None = None,
          image_size: int = IMAGE_SIZE, oct_depth: int = OCT_DEPTH, oct_size: int = OCT_SIZE, with_cup: bool = True):
    from ..prepare import build_data
    from ..splits import split_indices

    base = _locate(data_root)
    problems = Problems()
    got = _cases(base, problems)
    problems.raise_if_any(NAME)
    cases, grades = got
    if not cases:
        problems.add(str(base / GT), "lists no case")
    fundus_files, octs = [], []
    for case in cases:
        f = base / IMAGES / case / f"{case}.jpg"
        if not f.is_file():
            problems.add(str(f), "is missing (case listed in the GT xlsx)")
        fundus_files.append([f])
        o = oct_files(base, case)
        if not o:
            problems.add(str(base / IMAGES / case / case), "has no OCT B-scan <n>_image.jpg")
        octs.append(o)
    problems.raise_if_any(NAME)
    root = cache_root(cache_dir) / "m4oe-mt" / NAME
    fundus = cached_stack(root, "fundus", fundus_files, (3, image_size, image_size),
                          {"reader": "rgb", "size": image_size}, lambda fs: rgb_image(fs[0], image_size), problems)
    oct_ = cached_stack(root, "oct", octs, (1, oct_depth, oct_size, oct_size),
                        {"reader": "oct", "depth": oct_depth, "size": oct_size},
                        lambda fs: load_oct(fs, oct_depth, oct_size), problems)
    masks = [mask_file(base, c) for c in cases] if with_cup else []
    cup = None
    if with_cup:
        cup = cached_stack(root, "cup", [[m] if m else None for m in masks], (image_size, image_size),
                           {"reader": "cup<64", "size": image_size}, lambda fs: load_cup(fs[0], image_size),
                           problems, dtype=np.uint8)
    problems.raise_if_any(NAME)
    tasks = [TaskSpec("grade", "multiclass", 3, GRADES)]
    targets = {"grade": np.array(grades, np.int64)}
    target_mask = {"grade": np.ones(len(cases), bool)}
    if with_cup:
        tasks.append(TaskSpec("cup", "segmentation", 2, ("background", "cup")))
        targets["cup"] = np.asarray(cup.array, np.int64)
        target_mask["cup"] = np.array([m is not None for m in masks])
    spec = DatasetSpec(NAME, (ModalitySpec("fundus", "image2d", (3, image_size, image_size)),
                              ModalitySpec("oct", "volume3d", (1, oct_depth, oct_size, oct_size))),
                       tuple(tasks), "seeded 60/20/20 split grouped by case", f"GAMMA training set read from {base}",
                       params={"image_size": image_size, "oct_depth": oct_depth, "oct_size": oct_size,
                               "with_cup": with_cup})
    groups = np.array(cases)
    return build_data(spec, {"fundus": fundus, "oct": oct_}, targets, split_seed, ids=cases, target_mask=target_mask,
                      groups=groups, splits=split_indices(len(cases), split_seed, groups=groups))
