import os

import pytest
import torch

from fedrun import checkpoint
from fedrun.config import Config, all_fields, result_digest
from fedrun.errors import ConfigError


def _state(r: int) -> dict:
    return {
        "round": r,
        "global": torch.arange(5.0) * r,
        "strategy": {"m": torch.ones(2)},
        "history": [{"round": i} for i in range(1, r + 1)],
        "spec_digest": 11,
        "result_digest": 22,
    }


def test_save_keeps_the_newest_and_loads_back(tmp_path):
    for r in (2, 4, 6, 8):
        checkpoint.save(tmp_path, _state(r), keep=2)
    found = checkpoint.list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["round_000006.pt", "round_000008.pt"]
    state = checkpoint.load(found[-1], 11, 22)
    assert state["round"] == 8 and torch.equal(state["global"], torch.arange(5.0) * 8)
    assert set(state["rng"]) == {"torch", "numpy", "python"}


def test_crash_before_rename_leaves_the_previous_checkpoint(tmp_path):
    checkpoint.save(tmp_path, _state(3), keep=5)

    def crash():
        raise KeyboardInterrupt  # stands in for a kill between write and rename

    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, _state(6), keep=5, before_replace=crash)
    found = checkpoint.list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["round_000003.pt"]  # the temp file is not listed
    assert checkpoint.load(found[0], 11, 22)["round"] == 3


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable checkpoint"),
        (lambda p: p.write_bytes(b"garbage" * 10), "not a readable checkpoint"),
        (lambda p: torch.save({"x": 1}, p), "not a fedrun checkpoint"),
        (lambda p: os.remove(p), "no checkpoint at"),
    ],
)
def test_damaged_checkpoints_are_refused_with_one_line(tmp_path, damage, pattern):
    path = checkpoint.save(tmp_path, _state(1), keep=1)
    damage(path)
    with pytest.raises(ConfigError, match=pattern) as e:
        checkpoint.load(path, 11, 22)
    assert str(e.value).startswith("runtime.resume (--resume)")


def test_other_model_or_config_is_refused(tmp_path):
    path = checkpoint.save(tmp_path, _state(1), keep=1)
    with pytest.raises(ConfigError, match="different model"):
        checkpoint.load(path, 12, 22)
    with pytest.raises(ConfigError, match="different config"):
        checkpoint.load(path, 11, 23)


def _other_value(info):
    """A different valid-looking value of a config field, by its type."""
    from fedrun.config import literal_choices

    value = getattr(getattr(Config(), info.section), info.name)
    if literal_choices(info.type):
        return next(c for c in literal_choices(info.type) if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return value + "x"


RESULT_FIELDS = [
    n for n, i in all_fields().items()
    if i.section in ("fed", "data", "model", "train", "strategy")
    and n not in ("rounds", "data_root", "download")
]  # fmt: skip


@pytest.mark.parametrize("name", RESULT_FIELDS)
def test_result_digest_covers_every_field_that_changes_results(name):
    """A checkpoint resumes only under the same digest: every field of fed, data, model, train
    and strategy changes it (but the rounds, which a resume may raise, and where the data
    files live)."""
    info = all_fields()[name]
    c = Config()
    setattr(getattr(c, info.section), name, _other_value(info))
    assert result_digest(c) != result_digest(Config()), name


def test_result_digest_ignores_rounds_and_runtime_and_evaluation():
    a = Config()
    b = Config()
    b.fed.rounds, b.data.data_root, b.data.download = 7, "/elsewhere", True
    for name, info in all_fields().items():
        if info.section in ("runtime", "eval"):
            setattr(getattr(b, info.section), name, _other_value(info))
    assert result_digest(a) == result_digest(b)


def test_run_dir_leaves_the_config_alone_and_writes_clean_json(tmp_path):
    import json

    from fedrun.outputs import RunDir

    cfg = Config()
    run = RunDir(cfg, tmp_path / "run")
    run.start(cfg, [])
    assert cfg.runtime.out == ""  # fedrun.run(cfg) twice must not collide
    run.write_summary({"final": {"central_loss": float("nan")}, "rounds": 1})
    text = (tmp_path / "run" / "summary.json").read_text()
    assert "NaN" not in text and json.loads(text)["final"]["central_loss"] is None


class _RunsCode:
    """A pickle that creates a file when unpickled: what a crafted checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_code_is_refused_unread(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"global": torch.zeros(3), "payload": _RunsCode(marker)}, path)
    with pytest.raises(
        ConfigError, match=r"holds a io.open object.*refused unread: loading it could run code"
    ):
        checkpoint.load(path, 0, 0)
    assert not marker.exists()


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    import random

    import numpy as np

    random.seed(3)
    np.random.seed(4)
    np.random.standard_normal()  # a cached Gaussian in numpy's state
    torch.manual_seed(5)
    path = checkpoint.save(tmp_path, _state(1), keep=1)
    draws = (random.random(), np.random.standard_normal(), torch.rand(1).item())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    checkpoint.restore_rng(torch.load(path, weights_only=True))
    assert (random.random(), np.random.standard_normal(), torch.rand(1).item()) == draws


def test_resuming_into_a_folder_of_another_runs_checkpoints_is_refused(tmp_path):
    """Another run's round 20 would win rotation and every restart by its round number."""
    checkpoint.save(tmp_path, _state(20), keep=2)  # digests 11, 22
    checkpoint.check_owner(tmp_path, 11, 22)  # the same run: fine
    with pytest.raises(ConfigError, match=r"holds checkpoints of another run \(round_000020.pt"):
        checkpoint.check_owner(tmp_path, 11, 23)
    (tmp_path / "checkpoints" / checkpoint.OWNER).unlink()  # an unmarked folder: not ours
    with pytest.raises(ConfigError, match="runtime.out"):
        checkpoint.check_owner(tmp_path, 11, 22)
    checkpoint.check_owner(tmp_path / "empty", 1, 2)  # nothing there: nothing to mix


def test_rotation_takes_the_per_client_state_along(tmp_path):
    for r in (1, 2, 3):
        folder = checkpoint.client_state_dir(checkpoint.round_path(tmp_path, r))
        folder.mkdir(parents=True)
        (folder / "rank1.pt").write_bytes(b"")
        checkpoint.save(tmp_path, _state(r), keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "round_000002.clients", "round_000002.pt", "round_000003.clients", "round_000003.pt",
        "run.json",
    ]  # fmt: skip
