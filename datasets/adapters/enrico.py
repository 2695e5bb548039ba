"""ENRICO (I2MoE, ICML 2025): UI screenshot + wireframe images; 20 design-topic classes.

Expected files, under ``<data root>/enrico/`` (the official release as the reference's
``data/enrico/`` holds it)::

    design_topics.csv          columns screen_id, topic (one row per screen)
    screenshots/<screen_id>.jpg
    wireframes/<screen_id>.png

Where to obtain: the ENRICO release (Leiva, Hota, Oulasvirta 2020), https://github.com/luileito/enrico
(``design_topics.csv``, ``screenshots.zip``, ``wireframes.zip``), as linked from MultiBench, which the
I2MoE README points to. The reference loader is ``src/common/datasets/enrico.py`` of
https://github.com/Raina-Xin/I2MoE. Other files of the release (hierarchies, metadata) are not read.

Label map: the 20 topics in sorted order, index = position (the reference sorts the topics found in
the CSV, which gives the same map when all 20 occur): bare, camera, chat, dialer, editor, form,
gallery, list, login, maps, mediaplayer, menu, modal, news, other, profile, search, settings,
terms, tutorial. A topic outside this list is a problem.

Screens ``50105`` and ``50109`` are skipped, as in the reference (their wireframes are corrupt in
the release). Both images are converted to RGB, resized to 256 x 128 (H x W, bilinear) and scaled
to [0, 1] (a fixed, data-independent range): two ``image2d`` modalities of shape (3, 256, 128).
No modality is ever missing; a missing or unreadable image file is a problem.

Split: the reference's rule -- the CSV rows (after skipping the two screens) shuffled with
``random.Random(42 + split_seed)``; the first 65 % train, next 15 % val, last 20 % test
(``int()`` cut points). Split seed 0 is exactly the reference's split (seed 42).

Departures from the reference, and why: the reference applies its training augmentation
(random crop, flips, Gaussian blur) once, at load time, to every screenshot -- including val and
test -- and to the training wireframes; we load every image deterministically (resize only), as
the reference does for val/test wireframes, so val/test inputs are not randomly perturbed and
the dataset is reproducible. Augmentation, if any, belongs to the method. The split seed varies
the shuffle seed (42 + split seed) so repeated splits are possible.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..problems import Problems
from ..registry import data_root, register_dataset
from ..spec import DatasetNotFound, DatasetSpec, ModalitySpec, TaskSpec
from .common import duplicate_ids, read_table

NAME = "enrico"
FOLDER = "enrico"
MODALITIES = ("screenshot", "wireframe")
IMAGE_DIRS = {"screenshot": ("screenshots", ".jpg"), "wireframe": ("wireframes", ".png")}
TOPICS = ("bare", "camera", "chat", "dialer", "editor", "form", "gallery", "list", "login", "maps",
          "mediaplayer", "menu", "modal", "news", "other", "profile", "search", "settings", "terms", "tutorial")
IGNORED = ("50105", "50109")
HEIGHT, WIDTH = 256, 128
FRACTIONS = (0.65, 0.15, 0.20)
SEED = 42
OBTAIN = "the ENRICO release (https://github.com/luileito/enrico: design_topics.csv, screenshots.zip, wireframes.zip)"


def _locate(root: str | None) -> tuple[Path, Path]:
    r = data_root(root)
    base = r / FOLDER
    missing = []
    if not (base / "design_topics.csv").is_file():
        missing.append("design_topics.csv")
    for sub, ext in IMAGE_DIRS.values():
        if not (base / sub).is_dir():
            missing.append(f"{sub}/<screen_id>{ext}")
    if missing:
        raise DatasetNotFound(
            f"{NAME}: missing {', '.join(missing)} in {base} (data root {r}, set with --data-root or BENCH_DATA_ROOT); "
            f"obtain it from {OBTAIN} (nothing is downloaded)")
    return r, base


def _screens(base: Path, problems: Problems) -> tuple[list[str], list[str]]:
    path = base / "design_topics.csv"
    df = read_table(path, problems, ("screen_id", "topic"), dtype=str, keep_default_na=False)
    if df is None:
        return [], []
    ids = [s.strip() for s in df["screen_id"]]
    topics = [t.strip() for t in df["topic"]]
    for i, (s, t) in enumerate(zip(ids, topics)):
        if not s:
            problems.add(f"{path} row {i + 1}, column 'screen_id'", "is empty")
        if t not in TOPICS and s not in IGNORED:
            problems.add(f"{path} row {i + 1} (screen_id {s!r}), column 'topic'",
                         f"{t!r} is not one of the 20 ENRICO topics ({', '.join(TOPICS)})")
    duplicate_ids(ids, str(path), "screen_id", problems)
    keep = [i for i, s in enumerate(ids) if s not in IGNORED]
    return [ids[i] for i in keep], [topics[i] for i in keep]


def check(root: str | None, variant: str | None = None) -> Path:
    return _locate(root)[1]


def input_files(root: str | None, variant: str | None = None) -> tuple[list[Path], Path]:
    _, base = _locate(root)
    ids, _ = _screens(base, Problems())
    files = [base / "design_topics.csv"]
    for sub, ext in IMAGE_DIRS.values():
        files += [base / sub / f"{s}{ext}" for s in ids if (base / sub / f"{s}{ext}").is_file()]
    return files, base


def modality_names(root: str | None = None, variant: str | None = None) -> list[str]:
    return list(MODALITIES)


def reference_split(n: int, split_seed: int) -> dict[str, np.ndarray]:
    """The reference's shuffle-and-cut split of ``n`` rows (seed 42 + split_seed)."""
    keys = list(range(n))
    random.Random(SEED + split_seed).shuffle(keys)
    a, b = int(n * FRACTIONS[0]), int(n * (FRACTIONS[0] + FRACTIONS[1]))
    return {"train": np.sort(keys[:a]), "val": np.sort(keys[a:b]), "test": np.sort(keys[b:])}


def _load_image(path: Path, problems: Problems) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR)
            return np.asarray(im, np.float32).transpose(2, 0, 1) / 255.0
    except FileNotFoundError:
        problems.add(str(path), "is missing")
    except Exception as e:  # noqa: BLE001
        problems.add(str(path), f"cannot be read as an image ({type(e).__name__}: {e})")
    return None


@register_dataset(NAME, "ENRICO mobile UI design topics (I2MoE, ICML 2025)", embedded=False,
                  modalities="screenshot image, wireframe image", tasks="multiclass (20 classes)", check=check,
                  input_files=input_files, modality_names=modality_names)
def build(variant: str | None, split_seed: int, data_root: str | None = None):
    from ..prepare import build_data

    _, base = _locate(data_root)
    problems = Problems()
    ids, topics = _screens(base, problems)
    inputs = {m: np.zeros((len(ids), 3, HEIGHT, WIDTH), np.float32) for m in MODALITIES}
    for m, (sub, ext) in IMAGE_DIRS.items():
        for i, s in enumerate(ids):
            img = _load_image(base / sub / f"{s}{ext}", problems)
            if img is not None:
                inputs[m][i] = img
    if not ids and not problems:
        problems.add(str(base / "design_topics.csv"), "lists no screens")
    problems.raise_if_any(NAME)
    y = np.array([TOPICS.index(t) for t in topics], np.int64)
    spec = DatasetSpec(NAME, tuple(ModalitySpec(m, "image2d", (3, HEIGHT, WIDTH)) for m in MODALITIES),
                       (TaskSpec("topic", "multiclass", len(TOPICS), TOPICS),),
                       "the reference's rule: rows shuffled with random.Random(42 + split seed), 65/15/20 cut",
                       f"ENRICO release read from {base}")
    return build_data(spec, inputs, {"topic": y}, split_seed, ids=ids, splits=reference_split(len(ids), split_seed))
