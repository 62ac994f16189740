"""Network families: shapes, initialisations, re-initialisation, and the multi-head masking."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clrepro import models
from clrepro.data import TensorDataset
from clrepro.methods.base import Batch, cross_entropy
from clrepro.scenarios import split

CNN_SPEC = {"type": "cnn", "channels": [32, 64], "dense": 512, "init": "glorot", "head_init": "zero"}


def test_cnn_shapes_follow_the_si_cifar_network():
    """conv32(same)-conv32(valid)-pool, conv64(same)-conv64(valid)-pool: 32 -> 30 -> 15 -> 13 -> 6,
    so the dense layer sees 64 x 6 x 6 = 2304 features; 60 output units (6 tasks x 10)."""
    net = models.build(CNN_SPEC, (3, 32, 32), 60)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.padding) for c in convs] == [
        (3, 32, (1, 1)), (32, 32, (0, 0)), (32, 64, (1, 1)), (64, 64, (0, 0))]
    dense = [m for m in net.features if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(2304, 512)]
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.25, 0.5]
    x = torch.randn(5, 3, 32, 32)
    assert net(x).shape == (5, 60)
    assert net(x.contiguous(memory_format=torch.channels_last)).shape == (5, 60)
    # multiply-adds x 2: conv layers (output pixels x in-channels x 9 per output channel) + dense
    expected = 2 * (32 * 32 * 32 * 3 * 9 + 30 * 30 * 32 * 32 * 9 + 15 * 15 * 64 * 32 * 9 + 13 * 13 * 64 * 64 * 9
                    + 2304 * 512 + 512 * 60)
    assert models.flops_per_sample(net, (3, 32, 32)) == expected
    # training: forward, weight gradient, and input gradient for all but the first conv (the data's)
    assert models.flops_per_sample(net, (3, 32, 32), training=True) == 3 * expected - 2 * 32 * 32 * 32 * 3 * 9


def test_training_flops_count_the_products_autograd_computes():
    """784-400-400-10: 3 forward products, 3 weight gradients, 2 input gradients (not the data's)."""
    net = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))
    assert models.flops_per_sample(net, (784,), training=True) == 2 * (2 * (784 * 400 + 400 * 400 + 400 * 10)
                                                                        + 400 * 400 + 400 * 10)
    x = torch.randn(8, 784)
    with torch.profiler.profile() as prof:
        net(x).sum().backward()
    products = {e.key: e.count for e in prof.key_averages() if e.key in ("aten::addmm", "aten::mm")}
    assert products == {"aten::addmm": 3, "aten::mm": 5}


def test_glorot_and_zero_head_initialisation():
    net = models.build(CNN_SPEC, (3, 32, 32), 60)
    assert torch.count_nonzero(net.head.weight) == 0 and torch.count_nonzero(net.head.bias) == 0
    for m in net.features.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound, largest = math.sqrt(6 / (fan_in + fan_out)), float(m.weight.detach().abs().max())
            assert 0.9 * bound < largest <= bound
            assert torch.count_nonzero(m.bias) == 0
    # torch's default keeps PyTorch's uniform(+-1/sqrt(fan_in)) with non-zero biases
    mlp = models.build({"type": "mlp", "hidden": [50]}, (784,), 10)
    assert float(mlp.features[0].weight.detach().abs().max()) <= 1 / 28
    assert torch.count_nonzero(mlp.features[0].bias) > 0


def test_default_mlp_draws_what_it_always_drew():
    """The default initialisation must not consume extra random numbers: runs recorded before the
    other options existed keep their initial weights."""
    torch.manual_seed(3)
    net = models.build({"type": "mlp", "hidden": [20, 20]}, (784,), 10)
    torch.manual_seed(3)
    layers = [nn.Linear(784, 20), nn.Linear(20, 20), nn.Linear(20, 10)]
    got = [net.features[0], net.features[2], net.head]
    for a, b in zip(layers, got):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_reset_parameters_redraws_with_the_configured_scheme():
    net = models.build(CNN_SPEC, (3, 32, 32), 60)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    net.reset_parameters()
    assert torch.count_nonzero(net.head.weight) == 0
    conv = net.features[0]
    assert torch.count_nonzero(conv.bias) == 0 and float(conv.weight.detach().abs().max()) < 1.0


def test_model_config_errors_name_the_key():
    with pytest.raises(ValueError, match="model.type"):
        models.build({"type": "resnet"}, (784,), 10)
    with pytest.raises(ValueError, match="model.type"):
        models.build(CNN_SPEC, (784,), 10)
    with pytest.raises(ValueError, match="model.init"):
        models.build({"type": "mlp", "hidden": [4], "init": "he"}, (784,), 10)
    with pytest.raises(ValueError, match="model.channels"):
        models.build(dict(CNN_SPEC, channels=[8, 8, 8, 8]), (3, 32, 32), 10)


def test_multi_head_masking_scores_and_trains_only_the_task_units():
    """Task-IL on images: a task's loss is the softmax over its own 10 units (the masked softmax
    of the SI code); the other tasks' output units get no gradient and do not change the loss."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 32, 32, generator=g)
    y = torch.arange(20).repeat(2)
    bench = split(TensorDataset(x, y), TensorDataset(x, y), "task", [list(range(10)), list(range(10, 20))])
    assert bench.input_shape == (3, 32, 32) and bench.n_outputs == 20 and bench.active(1, 1) == (10, 20)
    net = models.build(dict(CNN_SPEC, head_init="default"), bench.input_shape, bench.n_outputs).eval()
    task = bench.train[1]
    b = Batch(task.inputs(), bench.targets(task.p, 1), *bench.active(1, 1), task=1)
    out = net(b.x)
    loss = cross_entropy([out], [b])
    assert torch.allclose(loss, F.cross_entropy(out[:, 10:20], task.p - 10))
    loss.backward()
    assert torch.count_nonzero(net.head.weight.grad[:10]) == 0 and torch.count_nonzero(net.head.bias.grad[:10]) == 0
    assert torch.count_nonzero(net.head.weight.grad[10:]) > 0
    with torch.no_grad():
        net.head.bias[:10] += 100.0          # other heads' units: huge, yet the loss is unchanged
        assert torch.allclose(cross_entropy([net(b.x)], [b]), loss)
