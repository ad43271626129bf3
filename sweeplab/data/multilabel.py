"""Pieces shared by the long-tailed multi-label datasets (task ``multilabel``).

Targets are float32 multi-hot vectors of shape [C]. Classes fall in three groups
by their number of training images, as in the VOC-MLT / COCO-MLT benchmarks of
the DistributionBalancedLoss repository (Wu et al., ECCV 2020) that LTML
(Guo & Wang, CVPR 2021) reports on: head >= 100 images, medium 20-99, tail < 20.
A dataset may instead give its published split (``class_split``): a text file,
or the repository's ``class_split.pkl`` (dict ``head``/``middle``/``tail`` ->
class indices), read with the restricted unpickler of ``safe_pickle``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sweeplab.data.folders import ImageFiles
from sweeplab.data.safe_pickle import safe_load

GROUPS = ("head", "medium", "tail")
_GROUP_ALIASES = {"head": "head", "many": "head", "medium": "medium", "middle": "medium", "tail": "tail",
                  "few": "tail"}


# -- groups ----------------------------------------------------------------------------


def class_counts(targets: Any) -> tuple[int, ...]:
    """Images containing each class, from an (N, C) multi-hot array."""
    return tuple(int(n) for n in np.asarray(targets).astype(bool).sum(axis=0))


def groups_from_counts(counts: Sequence[int], head_min: int = 100, tail_max: int = 20) -> dict[str, tuple[int, ...]]:
    """Class indices by training frequency: head ``>= head_min``, tail ``< tail_max``, medium between."""
    counts = list(counts)
    return {
        "head": tuple(c for c, n in enumerate(counts) if n >= head_min),
        "medium": tuple(c for c, n in enumerate(counts) if tail_max <= n < head_min),
        "tail": tuple(c for c, n in enumerate(counts) if n < tail_max),
    }


# -- class split files -----------------------------------------------------------------


def read_class_split(path: str | Path) -> dict[str, list[int | str]]:
    """The groups a class-split file gives, as ``{"head"|"medium"|"tail": [index or class name]}``.

    Text: lines ``head: 0 1 2`` (``middle``/``many``/``few`` accepted too; tokens
    separated by spaces, or by commas where a line has one, e.g. ``tail: traffic light, 12``;
    ``#`` starts a comment), or exactly three bare
    lines taken as head, medium, tail. Tokens are class indices or class names.
    ``.pkl``/``.pickle``: a dict group -> set/list/array of indices, unpickled as data only.
    Raises ``ValueError`` naming the file for anything else.
    """
    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle"):
        return _split_from_mapping(safe_load(path), path)
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    labelled = [re.match(r"^([A-Za-z_]+)\s*:(.*)$", line) for line in lines]
    if all(labelled) and labelled:
        return _split_from_mapping({m.group(1): _tokens(m.group(2)) for m in labelled}, path)
    if len(lines) == 3 and not any(labelled):
        return _split_from_mapping(dict(zip(GROUPS, (_tokens(line) for line in lines))), path)
    raise ValueError(f"{path}: a class split needs lines 'head: ...', 'medium: ...', 'tail: ...' "
                     "(or exactly three lines: head, medium, tail classes)")


def _tokens(text: str) -> list[int | str]:
    """Comma-separated when the text has a comma (so names may hold spaces), else space-separated."""
    parts = text.split(",") if "," in text else text.split()
    return [int(t) if re.fullmatch(r"-?\d+", t) else t for t in (p.strip() for p in parts) if t]


def _split_from_mapping(raw: Any, path: Path) -> dict[str, list[int | str]]:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a class split must be a mapping head/middle/tail -> classes, "
                         f"got {type(raw).__name__}")
    split: dict[str, list[int | str]] = {}
    for key, members in raw.items():
        group = _GROUP_ALIASES.get(str(key).strip().lower())
        if group is None:
            raise ValueError(f"{path}: unknown class group {key!r}; expected head, medium (or middle), tail")
        if group in split:
            raise ValueError(f"{path}: class group {group!r} given twice")
        if isinstance(members, np.ndarray):
            members = members.reshape(-1).tolist()
        elif isinstance(members, (set, frozenset)):
            members = sorted(members, key=str)
        elif isinstance(members, (int, np.integer, str)):
            members = [members]
        elif not isinstance(members, (list, tuple)):
            raise ValueError(f"{path}: group {key!r} must list classes, got {type(members).__name__}")
        split[group] = [m.item() if isinstance(m, np.generic) else m for m in members]
    missing = [g for g in GROUPS if g not in split]
    if missing:
        raise ValueError(f"{path}: class split lacks group(s) {', '.join(missing)}")
    return split


def resolve_class_split(split: dict[str, list[int | str]], class_names: Sequence[str],
                        source: str | Path) -> dict[str, tuple[int, ...]]:
    """Class indices per group, each class in exactly one group; names resolve against ``class_names``."""
    index_of = {name: i for i, name in enumerate(class_names)}
    groups: dict[str, tuple[int, ...]] = {}
    seen: dict[int, str] = {}
    for group in GROUPS:
        indices = []
        for token in split[group]:
            if isinstance(token, str):
                if token not in index_of:
                    raise ValueError(f"{source}: unknown class {token!r} in group {group}")
                token = index_of[token]
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < len(class_names):
                raise ValueError(f"{source}: class index {token!r} in group {group} is not in "
                                 f"[0, {len(class_names)})")
            if token in seen:
                raise ValueError(f"{source}: class {token} is in both {seen[token]} and {group}")
            seen[token] = group
            indices.append(token)
        groups[group] = tuple(sorted(indices))
    missing = [c for c in range(len(class_names)) if c not in seen]
    if missing:
        raise ValueError(f"{source}: classes {missing} are in no group (every class needs one)")
    return groups


# -- datasets --------------------------------------------------------------------------


def multi_hot(label_sets: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """(N, C) float32 multi-hot rows from lists of class indices."""
    targets = np.zeros((len(label_sets), num_classes), dtype=np.float32)
    for row, labels in enumerate(label_sets):
        targets[row, list(labels)] = 1.0
    return targets


class MultiLabelImages(ImageFiles):
    """Image files with multi-hot targets (a shared-memory (N, C) float32 tensor)."""

    dtype = np.float32

    def subset(self, positions: Sequence[int], transform=None) -> "MultiLabelImages":
        positions = list(positions)
        return MultiLabelImages([self.paths[i] for i in positions], self.targets[positions].numpy(),
                                self.transform if transform is None else transform)


def stratified_holdout(targets: Any, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(keep, held_out)`` (sorted) holding out about ``fraction`` of the rows of an
    (N, C) multi-hot matrix, each class represented as evenly as the data allow.

    Iterative stratification (Sechidis, Tsoumakas & Vlahavas, ECML 2011): the rarest
    remaining class is dealt first, each of its rows to the side that most lacks that
    class. Rare classes thus stay mostly on the larger (kept) side.
    """
    labels = np.asarray(targets).astype(bool)
    n, num_classes = labels.shape
    rng = np.random.default_rng(seed)
    shares = np.array([fraction, 1.0 - fraction])  # side 0 = held out, side 1 = kept
    want_rows = shares * n
    want_class = shares[:, None] * labels.sum(axis=0)[None, :].astype(float)
    side = np.full(n, -1)
    remaining = labels.copy()
    while remaining.any():
        left = remaining.sum(axis=0)
        rarest = np.flatnonzero(left == left[left > 0].min())
        c = int(rng.choice(rarest))
        for row in rng.permutation(np.flatnonzero(remaining[:, c])):
            need = want_class[:, c]
            best = np.flatnonzero(need == need.max())
            if len(best) > 1:
                best = best[want_rows[best] == want_rows[best].max()]
            s = int(rng.choice(best))
            side[row] = s
            want_rows[s] -= 1
            want_class[s] -= labels[row]
            remaining[row] = False
    for row in rng.permutation(np.flatnonzero(side < 0)):  # rows without labels
        s = int(np.argmax(want_rows))
        side[row] = s
        want_rows[s] -= 1
    return np.flatnonzero(side == 1), np.flatnonzero(side == 0)

