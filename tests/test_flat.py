import pytest
import torch
from torch import nn

from fedrun.flat import FlatSpec


class BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean(dim=(2, 3))
        return self.fc(x)


def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))


def test_layout_covers_float_params_and_buffers_not_int_buffers():
    spec = FlatSpec.of(BNNet())
    names = [e.name for e in spec.entries]
    assert "bn.running_mean" in names and "bn.running_var" in names
    assert spec.skipped == ("bn.num_batches_tracked",)
    expected = sum(t.numel() for t in BNNet().state_dict().values() if t.is_floating_point())
    assert spec.numel == expected
    # entries are contiguous, in state_dict order
    offsets = [e.offset for e in spec.entries]
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_flatten_load_round_trip_bitwise_with_batchnorm():
    src, dst = BNNet(), BNNet()
    _randomise(src, 1)
    src.bn.num_batches_tracked.fill_(2**30 + 7)  # beyond float32's exact integers
    dst.bn.num_batches_tracked.fill_(5)
    spec = FlatSpec.of(src)
    flat = spec.flatten(src)
    spec.load(dst, flat)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        if a.is_floating_point():
            assert torch.equal(a, b), k
    # the integer buffer never travels: the destination keeps its own value
    assert dst.bn.num_batches_tracked.item() == 5
    assert dst.bn.num_batches_tracked.dtype == torch.int64


def test_load_is_in_place_so_optimizers_keep_their_parameters():
    model = BNNet()
    ptrs = [p.data_ptr() for p in model.parameters()]
    spec = FlatSpec.of(model)
    spec.load(model, torch.randn(spec.numel))
    assert [p.data_ptr() for p in model.parameters()] == ptrs


def test_state_dict_loads_into_a_fresh_model():
    model = BNNet()
    spec = FlatSpec.of(model)
    flat = torch.randn(spec.numel)
    sd = spec.state_dict(model, flat)
    fresh = BNNet()
    fresh.load_state_dict(sd)  # strict: every key, right dtypes
    assert torch.equal(spec.flatten(fresh), flat)
    assert fresh.bn.num_batches_tracked.dtype == torch.int64


def test_digest_changes_with_shape_and_dtype_and_is_stable():
    a, b = FlatSpec.of(nn.Linear(3, 2)), FlatSpec.of(nn.Linear(3, 2))
    assert a.digest() == b.digest()
    assert a.digest() != FlatSpec.of(nn.Linear(2, 3)).digest()
    assert a.digest() != FlatSpec.of(nn.Linear(3, 2).double()).digest()
    assert 0 <= a.digest() < 2**63


def test_mixed_dtypes_promote_and_wrong_length_is_refused():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).double())
    spec = FlatSpec.of(model)
    assert spec.dtype == torch.float64
    flat = spec.flatten(model)
    spec.load(model, flat)
    assert torch.equal(spec.flatten(model), flat)
    with pytest.raises(ValueError, match="elements"):
        spec.load(model, torch.zeros(spec.numel + 1, dtype=torch.float64))


def test_half_precision_models_travel_in_float32():
    """The vector also carries round numbers and example counts: bf16 would round 257 to 256."""
    model = nn.Linear(3, 2).to(torch.bfloat16)
    spec = FlatSpec.of(model)
    assert spec.dtype == torch.float32
    flat = spec.flatten(model)
    spec.load(model, flat)
    assert model.weight.dtype == torch.bfloat16 and torch.equal(spec.flatten(model), flat)
