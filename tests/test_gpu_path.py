"""The GPU path, checked on the CPU: loss scaling under float16, VGG-16's input normalisation and
settings, the fused-optimizer fallback (issue 16). GPU claiming and determinism: test_gpu_claim.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import alrun.model.backbones
import alrun.model.inference
import alrun.train.fit
from alrun.config.schema import ModelSpec, TrainSpec
from alrun.core.devices import amp_precision
from alrun.core.errors import TrainingDiverged
from alrun.data.bundle import standardise_images
from alrun.model.backbones import IMAGENET
from alrun.model.builders import VGG16_HIDDEN, InputAffine, build_model, split_at_first_dropout
from alrun.model.inference import amp_dtype, grad_scaler
from alrun.train.fit import MAX_NONFINITE_STEPS, _optimizer, fit

pytestmark = pytest.mark.usefixtures("test_deadline")  # no test here can hang a run (conftest)

# --- 1. loss scaling -------------------------------------------------------------------------------


class Scale(nn.Module):
    """Multiplies by a tiny constant: in float16 the gradient flowing back through it underflows."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _tiny_gradient_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 3), Scale(1e-6))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)


@pytest.fixture
def float16_on_cpu(monkeypatch):
    """Autocast in float16 on the CPU, as on a GPU without bfloat16 (V100, T4)."""
    monkeypatch.setattr(alrun.model.inference, "amp_dtype",
                        lambda device, enabled: torch.float16 if enabled else None)


def _train(model: nn.Module, amp: bool) -> None:
    x, y = _data()
    fit(model, x, y, TrainSpec(epochs=2, batch_size=32, lr=1e-2), torch.Generator().manual_seed(2), None, amp)


def test_float16_training_scales_the_loss_so_small_gradients_survive(float16_on_cpu):
    model = _tiny_gradient_model()
    before = model[0].weight.detach().clone()
    _train(model, amp=True)
    assert grad_scaler(torch.device("cpu"), True).is_enabled()
    assert not torch.equal(model[0].weight, before)  # the float16 gradients reached the weights


def test_without_the_scaler_the_float16_gradients_underflow(float16_on_cpu, monkeypatch):
    # the same run with loss scaling off: every gradient is 0 in float16 and Adam does not move.
    # This is what the scaler prevents (and what makes the test above able to fail).
    monkeypatch.setattr(alrun.train.fit, "grad_scaler",
                        lambda device, enabled: torch.amp.GradScaler(device.type, enabled=False))
    model = _tiny_gradient_model()
    before = model[0].weight.detach().clone()
    _train(model, amp=True)
    assert torch.equal(model[0].weight, before)


def test_full_precision_training_is_unchanged_by_the_scaler():
    # amp off (or the CPU): the scaler is a pass-through, so results equal plain backward/step
    model_a, model_b = _tiny_gradient_model(), _tiny_gradient_model()
    _train(model_a, amp=False)
    x, y = _data()
    spec = TrainSpec(epochs=2, batch_size=32, lr=1e-2)
    opt, order_gen = _optimizer(model_b, spec), torch.Generator().manual_seed(2)
    for _ in range(2):
        order = torch.randperm(64, generator=order_gen)
        for start in range(0, 64, 32):
            batch = order[start : start + 32]
            loss = nn.functional.cross_entropy(model_b(x[batch]).float(), y[batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    assert torch.equal(model_a[0].weight, model_b[0].weight)
    assert not grad_scaler(torch.device("cpu"), True).is_enabled()  # no autocast on the CPU, no scaling


@pytest.mark.parametrize("capability,dtype,scaler", [
    ((7, 0), torch.float16, True),  # V100: bfloat16 only emulated
    ((7, 5), torch.float16, True),  # T4
    ((8, 0), torch.bfloat16, False),  # A100
    ((8, 6), torch.bfloat16, False),  # RTX 30xx, A10
    ((9, 0), torch.bfloat16, False),  # H100
    ((6, 1), torch.float16, True),  # P100-class
    ("cpu", None, False),
])
def test_precision_by_compute_capability(capability, dtype, scaler):
    assert amp_precision(capability) == (dtype, scaler)


@pytest.mark.parametrize("capability,expected", [((7, 0), torch.float16), ((9, 0), torch.bfloat16)])
def test_cuda_autocast_dtype_and_scaling_ask_the_jobs_own_device(monkeypatch, capability, expected):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or capability)
    cuda = torch.device("cuda", 1)
    assert amp_dtype(cuda, True) is expected
    assert asked == [cuda]  # the job's device, not the current one
    assert amp_dtype(cuda, False) is None and amp_dtype(torch.device("cpu"), True) is None
    # the scaler is asked for exactly when the dtype is float16 (GradScaler itself switches off
    # where CUDA is missing, so its `enabled` argument is what is checked)
    seen = {}
    monkeypatch.setattr(torch.amp, "GradScaler", lambda device, enabled: seen.update(device=device, enabled=enabled))
    grad_scaler(cuda, True)
    assert seen == {"device": "cuda", "enabled": expected is torch.float16}


class InjectInf(nn.Module):
    """Multiplies its input by inf on the calls numbered in `bad` (0-based) while training: a float16 overflow."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            if self.calls - 1 in self.bad:
                return x * float("inf")
        return x


def _inf_model(bad: set[int]) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 3), InjectInf(bad))


class DeviceTally(alrun.train.fit.LossTally):
    """The GPU's tally (tensors on the device, read once per epoch), here on the CPU."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self.on_host = False
        self.run = self._zero()
        self.new_epoch()


@pytest.fixture(params=["host", "device"])
def tally(request, monkeypatch):
    """Each test below twice: with the CPU's tally and with the GPU's (on-device) one."""
    if request.param == "device":
        monkeypatch.setattr(alrun.train.fit, "LossTally", DeviceTally)
    return request.param


def test_the_device_tally_reads_as_the_host_tally():
    losses = [0.5, 1.25, float("inf"), float("nan"), 0.75, float("nan"), 2.0, float("-inf")]
    host, device = alrun.train.fit.LossTally(torch.device("cpu")), DeviceTally(torch.device("cpu"))
    for epoch in range(2):
        host.new_epoch()
        device.new_epoch()
        for i, value in enumerate(losses[epoch * 4 : epoch * 4 + 4]):
            for t in (host, device):
                t.add(torch.tensor(value, dtype=torch.float32), 3 + i)
        a, b = host.read(), device.read()
        assert a[:3] == b[:3] and (a[3] == b[3] or (math.isnan(a[3]) and math.isnan(b[3]))), (a, b)
    assert host.read()[2] == 1  # the last step alone: the run of epoch 1 was broken by a finite loss


def test_float16_overflowed_step_is_skipped_and_training_goes_on(float16_on_cpu, tally):
    # 2 epochs of 2 steps; the second step's loss is non-finite: the scaler skips it, the rest train
    x, y = _data()
    spec = TrainSpec(epochs=2, batch_size=32, lr=1e-2)
    seen = []
    model = _inf_model({1})
    model[0].register_forward_hook(lambda m, a, out: seen.append(m.weight.detach().clone()))
    last = fit(model, x, y, spec, torch.Generator().manual_seed(2), None, True)
    assert math.isfinite(last) and torch.isfinite(model[0].weight).all()
    # the weights seen by step 3 are those of step 2: step 2 (the overflow) was not taken; the others were
    assert not torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2]) and not torch.equal(seen[2], seen[3])


def test_float16_a_run_of_non_finite_losses_is_divergence(float16_on_cpu, tally):
    x, y = _data()
    spec = TrainSpec(epochs=4, batch_size=32, lr=1e-2)  # 8 steps, steps 2 to 2 + MAX_NONFINITE_STEPS bad
    model = _inf_model(set(range(1, 1 + MAX_NONFINITE_STEPS)))
    with pytest.raises(TrainingDiverged, match="The training loss became nan"):
        fit(model, x, y, spec, torch.Generator().manual_seed(2), None, True)
    # one fewer is still a transient overflow
    fit(_inf_model(set(range(1, MAX_NONFINITE_STEPS))), x, y, spec, torch.Generator().manual_seed(2), None, True)


def test_full_precision_one_non_finite_loss_is_divergence(tally):
    # without loss scaling the step is taken and spoils the weights: one non-finite loss is enough
    x, y = _data()
    with pytest.raises(TrainingDiverged, match="in epoch 1"):
        fit(_inf_model({1}), x, y, TrainSpec(epochs=2, batch_size=32, lr=1e-2), torch.Generator().manual_seed(2))


def test_epoch_loss_is_summed_on_the_device_as_python_floats_summed_it(tally):
    # the returned mean equals the float64 sum of each step's float32 loss, weighted by its batch size
    x, y = _data()
    spec = TrainSpec(epochs=1, batch_size=24, lr=1e-2)  # batches of 24, 24, 16
    model = _tiny_gradient_model()
    losses = []
    model.register_forward_hook(lambda m, a, out: losses.append((float(nn.functional.cross_entropy(
        out.detach().float(), y[order[len(losses) * 24 : len(losses) * 24 + 24]])), out.shape[0])))
    order = torch.randperm(64, generator=torch.Generator().manual_seed(2))
    last = fit(model, x, y, spec, torch.Generator().manual_seed(2))
    total = 0.0
    for value, size in losses:
        total += value * size
    assert last == total / 64


# --- 6. fused optimizers, and the fallback where torch has none -------------------------------------


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_fused_optimizer_on_cpu(name):
    opt = _optimizer(nn.Linear(3, 2), TrainSpec(optimizer=name))
    assert opt.defaults["fused"] is True


@pytest.mark.parametrize("name,cls", [("adam", "Adam"), ("sgd", "SGD")])
def test_fused_optimizer_falls_back_where_torch_has_no_fused_kernel(monkeypatch, name, cls):
    real = getattr(torch.optim, cls)

    def old_torch(params, *args, fused=None, **kwargs):  # torch < 2.4 on the CPU
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                               "supported devices: ['cuda', 'xpu', 'privateuseone'].")
        return real(params, *args, fused=fused, **kwargs)

    monkeypatch.setattr(torch.optim, cls, old_torch)
    model = _tiny_gradient_model()
    opt = _optimizer(model, TrainSpec(optimizer=name))
    assert isinstance(opt, real) and not opt.defaults["fused"]
    before = model[0].weight.detach().clone()
    x, y = _data()
    fit(model, x, y, TrainSpec(epochs=1, optimizer=name, lr=1e-2), torch.Generator().manual_seed(0))
    assert not torch.equal(model[0].weight, before)


# --- 2. and 3. VGG-16: ImageNet normalisation, dropout and hidden width -------------------------------


@pytest.fixture
def fake_imagenet_vgg16(monkeypatch):
    """`pretrained=true` without a download: a seeded VGG-16 stands in for the ImageNet weights."""
    nets = []

    def torchvision_net(arch, spec):
        assert arch == "vgg16"
        torch.manual_seed(123)
        net = torchvision.models.vgg16(weights=None)
        nets.append(net.state_dict())
        return net

    monkeypatch.setattr(alrun.model.backbones, "torchvision_net", torchvision_net)
    return nets


def _first_conv_input(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    seen = []
    handle = conv.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("channels", [3, 1])
def test_vgg16_with_imagenet_weights_sees_imagenet_normalised_images(fake_imagenet_vgg16, channels):
    rng = np.random.default_rng(0)
    # pixel statistics far from ImageNet's: dark, low-contrast images
    shape = (6, 32, 32, channels) if channels == 3 else (6, 32, 32)
    raw = rng.integers(10, 90, size=shape, dtype=np.uint8)
    x, stats = standardise_images(raw)
    model = build_model(ModelSpec(name="vgg16", pretrained=True, hidden=16), tuple(x.shape[1:]), 4, 0, stats)
    seen = _first_conv_input(model, x)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in IMAGENET)
    if channels == 1:
        mean, std = mean.mean(dim=1, keepdim=True), std.mean(dim=1, keepdim=True)
    pixels = torch.from_numpy(raw).float().div(255).reshape(6, 32, 32, channels).permute(0, 3, 1, 2)
    expected = (pixels - mean) / std
    torch.testing.assert_close(seen, expected, atol=2e-5, rtol=1e-5)
    # the conversion is a fixed part of the deterministic trunk: MC inference runs it once per input
    trunk, _ = split_at_first_dropout(model)
    assert isinstance(trunk[0], InputAffine)
    assert not any(p.requires_grad for p in trunk[0].parameters())


def test_vgg16_without_pretrained_weights_keeps_the_data_standardisation():
    x, stats = standardise_images(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))
    model = build_model(ModelSpec(name="vgg16", pretrained=False, hidden=16), (3, 32, 32), 4, 0, stats)
    assert torch.equal(_first_conv_input(model, x), x)


def test_vgg16_honours_dropout_and_hidden(fake_imagenet_vgg16):
    model = build_model(ModelSpec(name="vgg16", pretrained=True, hidden=64, dropout=0.3), (3, 32, 32), 5, 0)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512 * 7 * 7, 64), (64, 64), (64, 5)]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    # another width cannot take ImageNet's fc6 / fc7, but the convolutions keep their pretrained weights
    pretrained = fake_imagenet_vgg16[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert torch.equal(convs[0].weight, pretrained["features.0.weight"])
    assert torch.equal(convs[-1].weight, pretrained["features.28.weight"])
    with torch.no_grad():
        assert tuple(model.eval()(torch.randn(2, 3, 32, 32)).shape) == (2, 5)


def test_vgg16_default_width_keeps_the_pretrained_classifier(fake_imagenet_vgg16):
    model = build_model(ModelSpec(name="vgg16", pretrained=True, hidden=VGG16_HIDDEN, dropout=0.5), (3, 32, 32), 5, 0)
    pretrained = fake_imagenet_vgg16[-1]
    fc6, fc7, last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert torch.equal(fc6.weight, pretrained["classifier.0.weight"])
    assert torch.equal(fc7.weight, pretrained["classifier.3.weight"])
    assert last.out_features == 5
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_vgg16_dropout_zero_is_a_deterministic_network():
    model = build_model(ModelSpec(name="vgg16", pretrained=False, hidden=8, dropout=0.0), (3, 32, 32), 3, 0)
    model.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("images", [True, False])
def test_npz_images_carry_the_pixel_statistics_vgg16_needs(tmp_path, images):
    from alrun.config.schema import DatasetSpec
    from alrun.data import load_dataset
    from tests.fixtures_data import write_npz

    truth = write_npz(tmp_path / "mine.npz", images=images)
    bundle = load_dataset(DatasetSpec(name="npz", root=str(tmp_path / "mine.npz")))
    if not images:
        assert bundle.pixel_stats is None
        return
    both = np.concatenate([truth["x_train"], truth["x_test"]]).astype(np.float64) / 255
    mean, std = bundle.pixel_stats
    np.testing.assert_allclose(mean, both.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(std, both.std(axis=(0, 1, 2), ddof=1), atol=1e-9)
    # and the images are still standardised by them
    np.testing.assert_allclose(bundle.x_train.mean(dim=(0, 2, 3)).numpy(), ((truth["x_train"] / 255 - mean) / std)
                               .mean(axis=(0, 1, 2)), atol=1e-5)


def test_vgg16_with_imagenet_weights_and_no_pixel_statistics_says_so(fake_imagenet_vgg16, caplog):
    caplog.set_level("WARNING", logger="alrun")
    build_model(ModelSpec(name="vgg16", pretrained=True, hidden=8), (3, 32, 32), 4, 0, None)
    assert "no pixel statistics" in caplog.text


# --- channels_last only where every weight and the input are 4-D (issue 22) ------------------------------


class Conv3dNet(nn.Module):
    """A custom model that takes images [B, C, H, W] and runs a Conv3d on them: a 5-D weight."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(1, 4, 3)
        self.conv3d = nn.Conv3d(1, 2, (1, 3, 3))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.LazyLinear(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv3d(self.conv2d(x).unsqueeze(1)))


class RefusesLayouts(nn.Module):
    """A module whose conversion fails, after the modules before it were converted."""

    def _apply(self, fn, recurse=True):
        raise RuntimeError("this module cannot be converted\nsecond line")


def _layouts(model: nn.Module) -> list[tuple[torch.Size, tuple[int, ...]]]:
    return [(t.shape, t.stride()) for t in (*model.parameters(), *model.buffers())]


def test_channels_last_leaves_a_conv3d_model_as_it_was():
    from alrun.core.devices import channels_last

    model = Conv3dNet()
    model(torch.randn(2, 1, 8, 8))  # the lazy layer takes its shape
    before, weights = _layouts(model), [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="rank 4"):  # what torch does with the whole model (the bug)
        Conv3dNet().to(memory_format=torch.channels_last)
    assert channels_last(model, 4) is False
    assert _layouts(model) == before
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))
    model(torch.randn(2, 1, 8, 8))  # and it still runs


def test_channels_last_converts_a_4d_model_on_4d_input_only():
    from alrun.core.devices import channels_last

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout(0.5), nn.LazyLinear(2))
    model(torch.randn(2, 3, 6, 6))
    assert channels_last(model, 3) is False and model[0].weight.is_contiguous()  # feature vectors: left alone
    assert channels_last(model, 4) is True
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last) and not model[0].weight.is_contiguous()


def test_a_failed_conversion_leaves_the_model_as_it_was(caplog):
    from alrun.core.devices import channels_last

    model = nn.Sequential(nn.Conv2d(3, 4, 3), RefusesLayouts(), nn.Flatten())
    before, weight = _layouts(model), model[0].weight.detach().clone()
    caplog.set_level("INFO", logger="alrun")
    assert channels_last(model, 4) is False
    assert _layouts(model) == before and torch.equal(model[0].weight, weight)
    assert "channels_last failed (this module cannot be converted)" in caplog.text
