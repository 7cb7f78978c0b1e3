"""Omniglot for the MAML benchmark: the zips shipped in data/omniglot/, read with no image library.

The files (Lake, Salakhutdinov and Tenenbaum 2015, MIT licence, data/omniglot/LICENSE):
``images_background_small1.zip`` and ``images_background_small2.zip`` (the
dataset's two small background sets: 10 alphabets, 292 characters, of which
Greek and Latin are in both, so 242 distinct characters, 20 drawers each) and
``all_runs.zip`` (the 20 official 20-way one-shot runs, from the evaluation
alphabets). The images are 105 x 105 1-bit PNGs: :func:`read_png` decodes
them with ``zlib`` alone, :func:`to_28` inverts them (ink = 1) and resizes
them to 28 x 28 with antialiased bilinear filtering (784 inputs, as the paper).
"""

from __future__ import annotations

import os
import random
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "omniglot")
BACKGROUND = ("images_background_small1.zip", "images_background_small2.zip")
RUNS = "all_runs.zip"


def read_png(data: bytes) -> torch.Tensor:
    """A non-interlaced grayscale PNG (bit depth 1, 2, 4 or 8) as a (height, width) float tensor in [0, 1]."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("data: not a PNG file (bad signature)")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ValueError("data: PNG without an IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if colour != 0 or depth not in (1, 2, 4, 8) or interlace:
        raise ValueError(f"data: only non-interlaced grayscale PNGs of bit depth 1-8 are read, got colour type {colour}, "
                         f"depth {depth}, interlace {interlace}")
    raw = zlib.decompress(b"".join(idat))
    stride = (width * depth + 7) // 8
    rows, prev = [], bytearray(stride)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        _unfilter(kind, line, prev)
        rows.append(bytes(line))
        prev = line
    packed = torch.frombuffer(bytearray(b"".join(rows)), dtype=torch.uint8).view(height, stride)
    per_byte = 8 // depth
    shifts = torch.arange(per_byte - 1, -1, -1, dtype=torch.uint8) * depth
    values = (packed.unsqueeze(-1) >> shifts) & ((1 << depth) - 1)
    return values.view(height, stride * per_byte)[:, :width].float() / ((1 << depth) - 1)


def _unfilter(kind: int, line: bytearray, prev: bytearray) -> None:
    """Undo one row's PNG filter in place (bytes per pixel 1: grayscale of depth <= 8)."""
    if kind == 0:
        return
    for i in range(len(line)):
        left = line[i - 1] if i else 0
        up, corner = prev[i], (prev[i - 1] if i else 0)
        if kind == 1:
            pred = left
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (left + up) >> 1
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
        else:
            raise ValueError(f"data: unknown PNG filter type {kind}")
        line[i] = (line[i] + pred) & 0xFF


def to_28(image: torch.Tensor) -> torch.Tensor:
    """A 105 x 105 Omniglot image (ink 0) as 784 inputs: ink = 1, resized to 28 x 28 (antialiased bilinear)."""
    ink = (1.0 - image)[None, None]
    return torch.nn.functional.interpolate(ink, size=(28, 28), mode="bilinear", antialias=True, align_corners=False).reshape(784)


def background(root: str = DATA) -> Dict[Tuple[str, str], torch.Tensor]:
    """The distinct background characters, (alphabet, character) -> (20, 784) images in drawer order."""
    chars: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for name in BACKGROUND:
        with zipfile.ZipFile(os.path.join(root, name)) as z:
            for entry in sorted(z.namelist()):
                m = re.fullmatch(r"[^/]+/([^/]+)/([^/]+)/([^/]+)\.png", entry)
                if m is None:
                    continue
                key = (m.group(1), m.group(2))
                drawers = chars.setdefault(key, {})
                if m.group(3) not in drawers:  # Greek and Latin are in both sets: the first copy is kept
                    drawers[m.group(3)] = to_28(read_png(z.read(entry)))
    return {key: torch.stack([d[k] for k in sorted(d)]) for key, d in sorted(chars.items())}


@dataclass
class Run:
    """One official 20-way one-shot run: 20 training images (one per class), 20 test images and their classes."""

    train: torch.Tensor  # (20, 784)
    test: torch.Tensor   # (20, 784)
    label: torch.Tensor  # (20,): the training image each test image belongs to


def runs(root: str = DATA) -> List[Run]:
    """The 20 official runs of all_runs.zip, in order."""
    out = []
    with zipfile.ZipFile(os.path.join(root, RUNS)) as z:
        names = sorted({e.split("/")[0] for e in z.namelist() if re.fullmatch(r"run\d\d/.*", e)})
        for run in names:
            pairs = [line.split() for line in z.read(f"{run}/class_labels.txt").decode().splitlines() if line.strip()]
            train_files = sorted({t for _, t in pairs})
            test_files = [q for q, _ in pairs]
            index = {t: i for i, t in enumerate(train_files)}
            load = lambda f: to_28(read_png(z.read(f)))  # noqa: E731
            out.append(Run(torch.stack([load(f) for f in train_files]), torch.stack([load(f) for f in test_files]),
                           torch.tensor([index[t] for _, t in pairs])))
    return out


@dataclass
class Pool:
    """Images and the row indices of each class (a character at one rotation)."""

    x: torch.Tensor
    classes: List[torch.Tensor]

    def __post_init__(self) -> None:
        sizes = {len(c) for c in self.classes}
        if len(sizes) != 1:
            raise ValueError(f"classes: every class needs the same number of images, got sizes {sorted(sizes)}")
        self.rows = torch.stack(self.classes)  # (classes, drawers)


def pool(chars: Sequence[torch.Tensor], rotations: bool = True) -> Pool:
    """Stack characters' images into one pool; with ``rotations`` every 90-degree rotation is a class of its own."""
    xs, classes, row = [], [], 0
    for images in chars:
        for k in range(4 if rotations else 1):
            xs.append(torch.rot90(images.view(-1, 28, 28), k, dims=(1, 2)).reshape(-1, 784))
            classes.append(torch.arange(row, row + images.shape[0]))
            row += images.shape[0]
    return Pool(torch.cat(xs), classes)


def split(chars: Dict[Tuple[str, str], torch.Tensor], fraction: float, seed: int) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """The characters in two parts: (1 - fraction) for meta-training, ``fraction`` for validation (by seed)."""
    keys = sorted(chars)
    random.Random(seed).shuffle(keys)
    n_val = round(fraction * len(keys))
    return [chars[k] for k in sorted(keys[n_val:])], [chars[k] for k in sorted(keys[:n_val])]


def sample_tasks(p: Pool, tasks: int, ways: int, shots: int, queries: int,
                 g: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s_idx, s_y, q_idx, q_y): ``tasks`` N-way K-shot tasks of distinct classes and distinct drawers.

    Task t's label j is its j-th class (classes are drawn in random order).
    """
    rows = p.rows
    cls = torch.rand(tasks, rows.shape[0], generator=g).topk(ways, dim=1).indices      # (tasks, ways), distinct
    pick = torch.rand(tasks, ways, rows.shape[1], generator=g).argsort(2)[..., :shots + queries]
    idx = rows[cls.unsqueeze(-1), pick]                                                  # (tasks, ways, shots+queries)
    s, q = idx[..., :shots], idx[..., shots:]
    labels = torch.arange(ways).view(1, ways, 1)
    return (s.reshape(tasks, -1), labels.expand_as(s).reshape(tasks, -1),
            q.reshape(tasks, -1), labels.expand_as(q).reshape(tasks, -1))


def test_tasks(rs: Sequence[Run], tasks: int, ways: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pool, s_idx, s_y, q_idx, q_y): ``tasks`` N-way one-shot tasks from the runs, spread evenly over them.

    The pool holds each run's 20 training images then its 20 test images; a
    task takes ``ways`` of a run's classes, their training images as the
    support set and the test images of those classes as the queries.
    """
    g = torch.Generator().manual_seed(seed)
    xs, s_idx, q_idx = [], [], []
    for run in rs:
        xs += [run.train, run.test]
    for t in range(tasks):
        r = t % len(rs)
        cls = torch.randperm(20, generator=g)[:ways]
        s_idx.append(40 * r + cls)
        where = torch.stack([(rs[r].label == c).nonzero()[0, 0] for c in cls])
        q_idx.append(40 * r + 20 + where)
    labels = torch.arange(ways).expand(tasks, ways)
    return torch.cat(xs), torch.stack(s_idx), labels, torch.stack(q_idx), labels
