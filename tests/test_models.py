import pytest
import torch
from torch import nn

from examples.flower_quickstart import cifar
from fedrun import checks
from fedrun.config import Config, parse_args
from fedrun.data import DatasetInfo
from fedrun.errors import ConfigError
from fedrun.models import build_model

# The Flower quickstart's Net, kept verbatim in the example that reproduces that tutorial.
SeedNet = cifar.Net


CIFAR = DatasetInfo((3, 32, 32), 10, "classification")


def _cfg(model, **kw) -> Config:
    cfg = Config()
    cfg.model.model = model
    for k, v in kw.items():
        setattr(cfg.model, k, v)
    return cfg


def test_cnn_is_exactly_the_seed_net():
    ours = build_model(_cfg("cnn"), CIFAR)
    seed = SeedNet()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in seed.state_dict().items()
    ]
    seed.load_state_dict(ours.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(ours(x), seed(x))
    # the same construction order: with one seed, the same initial weights
    torch.manual_seed(5)
    a = SeedNet()
    torch.manual_seed(5)
    from fedrun.models import Net

    b = Net()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_cnn_adapts_to_mnist_and_refuses_tiny_images():
    model = build_model(_cfg("cnn"), DatasetInfo((1, 28, 28), 10, "classification"))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError, match="cnn needs square images of at least 16x16"):
        build_model(_cfg("cnn"), DatasetInfo((1, 8, 8), 10, "classification"))


def test_resnet18_group_norm_has_no_running_statistics():
    bn = build_model(_cfg("resnet18"), CIFAR)
    gn = build_model(_cfg("resnet18", norm="group"), CIFAR)
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in gn.modules()) == 20
    gray = build_model(_cfg("resnet18", norm="group"), DatasetInfo((1, 28, 28), 10, "x"))
    assert gray.eval()(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_seeded_init_without_touching_global_rng():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = build_model(_cfg("mlp"), DatasetInfo((60,), 10, "classification"))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model(_cfg("mlp"), DatasetInfo((60,), 10, "classification"))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_factory_by_import_path_gets_the_arguments_it_accepts():
    info = DatasetInfo((60,), 10, "classification")
    model = build_model(_cfg("tests.userpkg.factories:two_layer"), info)
    assert model(torch.randn(2, 60)).shape == (2, 10) and model[1].out_features == 3
    lazy = build_model(_cfg("tests.userpkg.factories:tiny"), info)
    assert lazy(torch.randn(2, 60)).shape == (2, 10)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("tests.userpkg.nomodule:f", "no module named 'tests.userpkg.nomodule'"),
        ("tests.userpkg.factories:missing", "has no attribute 'missing'"),
        ("tests.userpkg.factories:NOT_CALLABLE", "is not callable"),
    ],
)
def test_bad_factories_fail_validation(path, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        checks.validate(parse_args(["--model", path]))
    assert str(e.value).startswith("model.model (--model)")


def test_factory_returning_no_module():
    with pytest.raises(ConfigError, match="returned int"):
        build_model(_cfg("tests.userpkg.factories:not_a_model"), CIFAR)


class _FailsInTraining(torch.nn.Linear):
    def forward(self, x):
        if self.training:
            raise RuntimeError("no training here")
        return super().forward(x)


def test_set_up_check_runs_a_training_step_on_a_copy():
    """The worker's model check tries a training-mode forward and backward too (where a
    BatchNorm or a train-only branch fails), without moving the model's own statistics."""
    from fedrun.data.types import Split
    from fedrun.task import load_task

    cfg = parse_args([])
    task = load_task(cfg)
    data = Split(torch.randn(8, 4), torch.randint(0, 3, (8,)))
    with pytest.raises(ConfigError, match=r"in training mode \(RuntimeError: no training here\)"):
        task.check_model(_FailsInTraining(4, 3), data, "client 0", cfg, train=True)
    task.check_model(_FailsInTraining(4, 3), data, "the server's central set", cfg)  # eval only
    bn = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    task.check_model(bn, data, "client 0", cfg, train=True)
    assert torch.equal(bn[1].running_mean, torch.zeros(3)) and bn[1].num_batches_tracked == 0
