"""A tiny but valid CORe50 in the real on-disk format, for tests.

The official archive (https://vlomonaco.github.io/core50/, ``core50_128x128.zip``) is a zip with a
top folder ``core50_128x128/`` holding ``s<session>/o<object>/C_<ss>_<oo>_<fff>.png``: 11
sessions, 50 objects (categories of 5: o1-o5, o6-o10, ...), ~300 frames per clip, each a 128 x 128
RGB PNG. Each category here is a fixed random image plus noise, so it is learnable in a few steps.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ARCHIVE = "core50_128x128.zip"


def write_core50(folder: Path, objects=(1, 6, 11, 16), sessions=(1, 2, 3, 7), frames=(0, 10, 11, 30, 50),
                 seed: int = 0) -> dict[str, str]:
    """Write the archive into ``folder``; return {archive: md5}."""
    rng = np.random.default_rng(seed)
    protos = {c: rng.integers(0, 256, (128, 128, 3)) for c in range(10)}
    path = Path(folder) / ARCHIVE
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for s in sessions:
            for o in objects:
                for f in frames:
                    img = np.clip(protos[(o - 1) // 5] + rng.normal(0, 20, (128, 128, 3)), 0, 255).astype(np.uint8)
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="PNG")
                    z.writestr(f"core50_128x128/s{s}/o{o}/C_{s:02d}_{o:02d}_{f:03d}.png", buf.getvalue())
    return {ARCHIVE: hashlib.md5(path.read_bytes()).hexdigest()}
