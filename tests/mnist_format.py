"""A tiny but valid MNIST in the real on-disk format (gzip-compressed IDX files), for tests.

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian int32 magic number whose
third byte is the element type (0x08 = unsigned byte) and fourth byte the number of dimensions,
then one big-endian int32 per dimension, then the data in C order. Images: magic 0x00000803,
dims (N, 28, 28); labels: magic 0x00000801, dim (N,).

Each digit class is a fixed random sparse 28x28 prototype plus Gaussian noise, so the classes are
learnable by a small MLP in a few dozen steps.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801


def make_arrays(n_train_per_class: int = 30, n_test_per_class: int = 10, seed: int = 0
                ) -> dict[str, np.ndarray]:
    """The pixel (N, 28, 28) uint8 and label (N,) uint8 arrays that ``write_mnist`` writes."""
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((10, 28, 28)) < 0.25) * 220.0

    def sample(n_per_class):
        labels = np.repeat(np.arange(10), n_per_class)
        labels = labels[rng.permutation(len(labels))]          # classes interleaved, as in MNIST
        noise = rng.normal(0.0, 40.0, (len(labels), 28, 28))
        images = np.clip(np.rint(prototypes[labels] + noise), 0, 255).astype(np.uint8)
        return images, labels.astype(np.uint8)

    train_x, train_y = sample(n_train_per_class)
    test_x, test_y = sample(n_test_per_class)
    return {"train_images": train_x, "train_labels": train_y,
            "test_images": test_x, "test_labels": test_y}


def idx_bytes(array: np.ndarray) -> bytes:
    """The uncompressed IDX encoding of a uint8 array of 1 (labels) or 3 (images) dimensions."""
    assert array.dtype == np.uint8 and array.ndim in (1, 3)
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_mnist(folder, n_train_per_class: int = 30, n_test_per_class: int = 10, seed: int = 0
                ) -> dict[str, str]:
    """Write the four gzip'd IDX files into ``folder``; return {file name: md5 of the .gz}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = make_arrays(n_train_per_class, n_test_per_class, seed)
    checksums = {}
    for key, fname in FILES.items():
        path = folder / fname
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(idx_bytes(arrays[key]))
        checksums[fname] = hashlib.md5(path.read_bytes()).hexdigest()
    return checksums
