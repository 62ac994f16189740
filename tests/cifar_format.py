"""A tiny but valid CIFAR-10 / CIFAR-100 in the real on-disk format ("python version"), for tests.

The official archives (https://www.cs.toronto.edu/~kriz/cifar.html) are gzip'd tarballs with a
top folder ``cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``, ``readme.html``) or ``cifar-100-python/`` (``train``, ``test``, ``meta``). Each
file is a Python 2 cPickle (protocol 2) of a dict whose keys and strings are Python 2 ``str``:
read back as ``b"data"`` with ``encoding="bytes"`` (the official recipe) and as ``"data"`` with
``encoding="latin1"`` (torchvision). ``data`` is a numpy uint8 array (N, 3072), each row the
32x32 red plane, then green, then blue, row-major; ``labels`` (CIFAR-10) or ``fine_labels`` and
``coarse_labels`` (CIFAR-100) are lists of ints; ``batch_label`` a string; ``filenames`` a list
of strings. The meta files hold ``label_names`` (and ``num_cases_per_batch``, ``num_vis``), or
``fine_label_names`` and ``coarse_label_names``. The pickles are written opcode for opcode as
Python 2 wrote them (``numpy.core.multiarray._reconstruct``, strings as BINSTRING).

Each class is a fixed random 3x32x32 prototype image plus Gaussian noise, so the classes are
learnable by a small network in a few dozen steps.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm").split()
CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees "
    "vehicles_1 vehicles_2").split()
assert len(CIFAR100_NAMES) == 100 and len(CIFAR100_COARSE) == 20

#: name -> (archive, top folder, training batch files, test batch file, meta file)
LAYOUT = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], "test", "meta"),
}
#: the parameters of the ``tiny_cifar`` fixture's archives
TINY = {"cifar10": dict(n_train_per_class=8, n_test_per_class=4, seed=0),
        "cifar100": dict(n_train_per_class=8, n_test_per_class=4, seed=1, n_classes=50)}
README = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; url=http://www.cs.toronto.edu/~kriz/cifar.html\">\n"


def make_arrays(name: str, n_train_per_class: int = 8, n_test_per_class: int = 4, seed: int = 0,
                n_classes: int | None = None) -> dict[str, np.ndarray]:
    """The pixels (N, 3, 32, 32) uint8 and labels (N,) int64 ("train_x", "train_y", "test_x",
    "test_y") that ``write_cifar`` writes; only the first ``n_classes`` classes have samples."""
    total = 10 if name == "cifar10" else 100
    n_classes = total if n_classes is None else n_classes
    assert 1 <= n_classes <= total
    rng = np.random.default_rng(seed)
    prototypes = rng.random((n_classes, 3, 32, 32)) * 255.0

    def sample(n_per_class):
        labels = np.repeat(np.arange(n_classes), n_per_class)
        labels = labels[rng.permutation(len(labels))]          # classes interleaved, as in CIFAR
        noise = rng.normal(0.0, 40.0, (len(labels), 3, 32, 32))
        return np.clip(np.rint(prototypes[labels] + noise), 0, 255).astype(np.uint8), labels.astype(np.int64)

    train_x, train_y = sample(n_train_per_class)
    test_x, test_y = sample(n_test_per_class)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


# --- Python 2 cPickle, protocol 2 -----------------------------------------------------------------

class _Global:
    """A module-level name, pickled as GLOBAL ``module\\nname\\n``."""

    def __init__(self, module: str, name: str):
        self.ref = f"{module}\n{name}\n".encode()

    def __call__(self):  # save_reduce wants a callable
        raise NotImplementedError


class _Reduce:
    def __init__(self, func: _Global, args: tuple, state):
        self.func, self.args, self.state = func, args, state


class _Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING), as cPickle did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2str(self, obj: bytes):
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    def save_global_ref(self, obj: _Global):
        self.write(pickle.GLOBAL + obj.ref)
        self.memoize(obj)

    def save_reduce_obj(self, obj: _Reduce):
        self.save_reduce(obj.func, obj.args, obj.state, obj=obj)

    dispatch[bytes] = save_py2str
    dispatch[_Global] = save_global_ref
    dispatch[_Reduce] = save_reduce_obj


_RECONSTRUCT, _NDARRAY, _DTYPE = (_Global("numpy.core.multiarray", "_reconstruct"), _Global("numpy", "ndarray"),
                                  _Global("numpy", "dtype"))


def _py2(obj):
    """The object tree as Python 2 numpy pickled it: strings as ``str`` (bytes here), a uint8
    array as ``_reconstruct(ndarray, (0,), 'b')`` with state (1, shape, dtype, fortran, raw bytes)."""
    if isinstance(obj, str):
        return obj.encode("latin1")
    if isinstance(obj, dict):
        return {_py2(k): _py2(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_py2(v) for v in obj]
    if isinstance(obj, np.ndarray):
        assert obj.dtype == np.uint8
        dtype = _Reduce(_DTYPE, (b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0))
        return _Reduce(_RECONSTRUCT, (_NDARRAY, (0,), b"b"),
                       (1, tuple(obj.shape), dtype, False, np.ascontiguousarray(obj).tobytes()))
    assert obj is None or isinstance(obj, int), type(obj)
    return obj


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(_py2(obj))
    return buf.getvalue()


# --- the files ------------------------------------------------------------------------------------

def member_bytes(name: str, n_train_per_class: int = 8, n_test_per_class: int = 4, seed: int = 0,
                 n_classes: int | None = None) -> dict[str, bytes]:
    """{path inside the archive: content} of every file of the archive, in the archive's order."""
    _, top, train_files, test_file, meta_file = LAYOUT[name]
    a = make_arrays(name, n_train_per_class, n_test_per_class, seed, n_classes)
    label_names = CIFAR10_NAMES if name == "cifar10" else CIFAR100_NAMES

    def batch(x, y, batch_label):
        d = {"batch_label": batch_label, "data": x.reshape(len(x), 3072),
             "filenames": [f"{label_names[c]}_s_{i:06d}.png" for i, c in enumerate(y.tolist(), 1)]}
        if name == "cifar10":
            d["labels"] = y.tolist()
        else:
            d["fine_labels"], d["coarse_labels"] = y.tolist(), (y // 5).tolist()
        return py2_pickle(d)

    files = {}
    parts = np.array_split(np.arange(len(a["train_y"])), len(train_files))
    for i, (fname, idx) in enumerate(zip(train_files, parts), 1):
        files[f"{top}/{fname}"] = batch(a["train_x"][idx], a["train_y"][idx],
                                        f"training batch {i} of {len(train_files)}")
    files[f"{top}/{test_file}"] = batch(a["test_x"], a["test_y"], "testing batch 1 of 1")
    if name == "cifar10":
        meta = {"num_cases_per_batch": len(parts[0]), "label_names": CIFAR10_NAMES, "num_vis": 3072}
        files[f"{top}/readme.html"] = README
    else:
        meta = {"fine_label_names": CIFAR100_NAMES, "coarse_label_names": CIFAR100_COARSE}
    files[f"{top}/{meta_file}"] = py2_pickle(meta)
    return files


def write_archive(path, members: dict[str, bytes], top: str | None = None) -> str:
    """Write a reproducible tar.gz (a directory entry ``top``, then ``members``); return its md5."""
    path = Path(path)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if top:
            info = tarfile.TarInfo(top)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for member, content in members.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar(folder, name: str, n_train_per_class: int = 8, n_test_per_class: int = 4, seed: int = 0,
                n_classes: int | None = None) -> dict[str, str]:
    """Write the archive of ``name`` ("cifar10" or "cifar100") into ``folder``; return the
    checksums override {archive file name: md5, path of each member: md5}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    archive, top = LAYOUT[name][:2]
    members = member_bytes(name, n_train_per_class, n_test_per_class, seed, n_classes)
    checksums = {archive: write_archive(folder / archive, members, top)}
    checksums.update({m: hashlib.md5(c).hexdigest() for m, c in members.items() if not m.endswith(".html")})
    return checksums
