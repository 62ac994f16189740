"""What CRUMB's online streams read: pretrained weights (torchvision's weights API) fetched like a
dataset, checked against the SHA-256 prefix their file name carries, and the SqueezeNet that starts
from them (tested on a stand-in, a ``squeezenet1_0`` state dict of random weights saved as
torchvision saves its own); CORe50's official archive, sampled as the CRUMB reference samples it."""
import hashlib
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from core50_format import ARCHIVE, write_core50
from PIL import Image

from clrepro import data, methods, models, scenarios
from clrepro.methods.base import Sampler
from clrepro.scenarios import Benchmark, Task

OFFICIAL = "squeezenet1_0-b66bff10.pth"


def stand_in(folder):
    """A random ``squeezenet1_0`` state dict under the official file name in ``folder/weights``:
    (its path, the checksum override naming its own SHA-256 prefix, the state dict)."""
    from torchvision.models import squeezenet1_0

    torch.manual_seed(3)
    state = squeezenet1_0(weights=None).state_dict()
    path = folder / "weights" / OFFICIAL
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path, {OFFICIAL: "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:8]}, state


def test_the_official_file_and_checksum_come_from_torchvision_weights_api():
    from torchvision.models import SqueezeNet1_0_Weights

    assert data.resources("squeezenet1_0") == [(OFFICIAL, "sha256:b66bff10")]
    cls, _ = data.WEIGHTS["squeezenet1_0"]
    assert cls.mirrors[0] + OFFICIAL == SqueezeNet1_0_Weights.IMAGENET1K_V1.url
    assert data.weights_file("data", "squeezenet1_0") == data.dataset_folder("data", "squeezenet1_0") / OFFICIAL


def test_weights_are_fetched_verified_and_a_wrong_file_is_refused(tmp_path):
    mirror = tmp_path / "mirror"
    path, checksums, _ = stand_in(mirror)
    root = tmp_path / "data"
    # against the official prefix the stand-in is refused, naming the file and what it must be
    with pytest.raises(data.ChecksumError, match=f"{OFFICIAL}: expected a SHA-256 beginning b66bff10"):
        data.fetch("squeezenet1_0", root, mirror=str(mirror))
    assert not any((root / "weights").iterdir())          # nothing half-written left
    out = data.fetch("squeezenet1_0", root, mirror=str(mirror), checksums=checksums)
    assert out == [data.weights_file(root, "squeezenet1_0")] and out[0].read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="pretrained weights, not a dataset"):
        data.load("squeezenet1_0", root, train=True)


def test_download_status_says_why_weights_could_not_be_had(tmp_path):
    (tmp_path / "mirror").mkdir()
    status = tmp_path / "status.json"
    proc = subprocess.run([sys.executable, "-m", "clrepro", "download", "squeezenet1_0", "--root",
                           str(tmp_path / "data"), "--mirror", str(tmp_path / "mirror"), "--status", str(status)],
                          capture_output=True, text=True, env={"PATH": "", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    recorded = json.loads(status.read_text())
    assert recorded["ok"] is False and recorded["reason"].startswith(f"no data: {OFFICIAL} not found")


def test_squeezenet_loads_the_features_and_starts_its_classifier_afresh(tmp_path):
    path, checksums, state = stand_in(tmp_path)
    spec = {"type": "squeezenet", "weights": "imagenet", "input_size": 64}
    with pytest.raises(data.ChecksumError, match=f"{OFFICIAL}: expected a SHA-256 beginning b66bff10"):
        models.build(spec, (3, 32, 32), 7, tmp_path)          # the stand-in is not the official file
    net = models.build(spec, (3, 32, 32), 7, tmp_path, checksums)
    for k, v in net.features.state_dict().items():
        assert torch.equal(v, state[f"features.{k}"])
    conv = net.head[1]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (512, 7, (3, 3), (1, 1))
    # the 32 x 32 input is resized to 64 x 64 and normalised with ImageNet's mean and std
    x = torch.rand(2, 3, 32, 32)
    resized = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(models.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(models.IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(net.stem(x), (resized - mean) / std)
    assert net.embed(x).shape == (2, 512, 3, 3)
    net.eval()
    assert net(x).shape == (2, 7) and (net(x) >= 0).all()      # ReLU then average pooling: logits >= 0
    with torch.no_grad():
        net.features[0].weight.add_(1.0)
    net.reset_parameters()                                     # the pretrained features again
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    with pytest.raises(FileNotFoundError, match="clrepro download squeezenet1_0"):
        models.build({"type": "squeezenet", "weights": "imagenet"}, (3, 32, 32), 7, tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="squeezenet needs colour images"):
        models.build({"type": "squeezenet"}, (784,), 7)


def test_crumb_keeps_pretrained_features_frozen_from_the_first_step(tmp_path):
    _, checksums, _ = stand_in(tmp_path)
    gen = torch.Generator().manual_seed(0)
    tasks = [Task(torch.rand(12, 3, 32, 32, generator=gen), torch.arange(12) % 2 + 2 * t) for t in range(2)]
    bench = Benchmark("toy", "class", 2, tasks, tasks, (3, 32, 32))
    net = models.build({"type": "squeezenet", "weights": "imagenet", "input_size": 32}, (3, 32, 32), 4, tmp_path,
                       checksums)
    cls, hp = methods.expand("crumb", {"method": "crumb", "budget": 4, "cut": 12, "block_length": 16}, "class")
    m = cls(net, bench, hp, seed=0)
    assert m.shape == (512, 1, 1) and m.positions == 32
    below = {k: v.clone() for k, v in net.features[:12].state_dict().items()}
    above = net.features[12].squeeze.weight.clone()
    opt = torch.optim.SGD([p for p in net.parameters()], lr=0.1)
    m.begin_task(0)
    m.prepare(0)
    assert m.frozen                       # the first task's loss is the stream's: CE on the reconstruction
    step = m.draw(6)
    step.batches = step.batches[:1]
    step.outputs = m.forward(step)
    loss = m.loss(step)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in net.features[:12].parameters())
    assert net.codebook.grad.abs().sum() > 0 and net.features[12].squeeze.weight.grad.abs().sum() > 0
    opt.step()
    for k, v in net.features[:12].state_dict().items():
        assert torch.equal(v, below[k])
    assert not torch.equal(net.features[12].squeeze.weight, above)


def test_core50_frames_sessions_and_labels_as_the_crumb_reference_samples_them(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    checksums = write_core50(mirror, objects=(1, 5, 6, 50), sessions=(1, 3, 7, 10, 11), frames=(0, 9, 10, 11, 30, 310))
    root = tmp_path / "data"
    with pytest.raises(data.ChecksumError, match=f"{ARCHIVE}: expected md5 745f3373fed08d69343f1058ee559e13"):
        data.fetch("core50", root, mirror=str(mirror))
    data.fetch("core50", root, mirror=str(mirror), checksums=checksums)
    train = data.load("core50", root, train=True, checksums=checksums)
    test = data.load("core50", root, train=False, checksums=checksums)
    # frames 10 and 30 of each clip (every 20th from the 10th, below the 300th); sessions 3, 7, 10 test
    assert train.x.shape == (2 * 4 * 2, 3, 128, 128) and test.x.shape == (3 * 4 * 2, 3, 128, 128)
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1
    assert train.y.tolist() == [0, 0, 0, 0, 1, 1, 9, 9] * 2          # o1, o5 -> 0; o6 -> 1; o50 -> 9
    assert train.clips.tolist() == [c for s in (1, 11) for o in (1, 5, 6, 50) for c in (100 * s + o,) * 2]
    with zipfile.ZipFile(root / "CORe50" / ARCHIVE) as z:
        first = np.array(Image.open(z.open("core50_128x128/s1/o1/C_01_01_010.png")))
    assert torch.equal(train.x[0], torch.from_numpy(first).permute(2, 0, 1) / 255.0)


def test_class_instance_streams_whole_clips_in_temporal_order():
    # 2 classes x 3 clips x 4 frames; a frame's value is its position in its clip
    clips = torch.arange(6).repeat_interleave(4)
    frames = torch.arange(4).repeat(6).float()
    ds = data.TensorDataset(frames[:, None].repeat(1, 4), clips // 3, clips)
    with pytest.raises(ValueError, match="class_instance needs a dataset of video clips"):
        scenarios.split(data.TensorDataset(ds.x, ds.y), ds, "class", [[0, 1]], ordering="class_instance")
    bench = scenarios.split(ds, ds, "class", [[0, 1]], ordering="class_instance")
    orders = []
    for seed in (0, 0, 1):
        sampler = Sampler(bench, [0], 0, seed)
        rows = torch.cat([sampler.indices(4) for _ in range(12)])     # two passes of 24 samples
        for epoch in rows.split(24):
            assert sorted(epoch.tolist()) == list(range(24))          # every frame once a pass
            seen = clips[epoch]
            for c in range(6):                                        # a clip: consecutive, frames in order
                at = torch.nonzero(seen == c).squeeze(1)
                assert at.tolist() == list(range(at[0], at[0] + 4))
                assert frames[epoch[at]].tolist() == [0, 1, 2, 3]
        orders.append(clips[rows].unique_consecutive().tolist())
    assert orders[0] == orders[1] and orders[0] != orders[2]           # fixed by the seed
    assert orders[0][:6] != orders[0][6:]                              # a new clip order each pass
    iid = Sampler(scenarios.split(ds, ds, "class", [[0, 1]]), [0], 0, 0).indices(24)
    assert len(clips[iid].unique_consecutive()) > 6                    # class-iid: frames shuffled
