import dataclasses

import pytest
import tomli_w

from fedrun import checks
from fedrun.config import (
    Config,
    all_fields,
    build_parser,
    literal_choices,
    load_toml,
    parse_args,
    to_toml,
)
from fedrun.errors import ConfigError

REQUIRED_FLAGS = [
    "--rounds",
    "--num-clients",
    "--clients-per-round",
    "--local-epochs",
    "--local-steps",
    "--lr",
    "--momentum",
    "--weight-decay",
    "--batch-size",
    "--dataset",
    "--model",
    "--partition",
    "--eval-every",
    "--seed",
    "--out",
    "--config",
    "--backend",
    "--device",
]


def test_defaults_are_valid():
    Config().validate()


def test_every_field_has_a_docstring_and_every_section_too():
    for name, info in all_fields().items():
        assert len(info.doc) > 10, name
    for sec in dataclasses.fields(Config):
        assert sec.default_factory.__doc__  # type: ignore[misc]


def test_required_flags_exist_and_help_shows_docstrings():
    parser = build_parser()
    for flag in REQUIRED_FLAGS:
        assert flag in parser._option_string_actions, flag
    assert all_fields()["rounds"].doc in " ".join(parser.format_help().split())


def test_flags_parse_with_types():
    cfg = parse_args(["--rounds", "7", "--lr", "0.5", "--clients-per-round", "0.25", "--overwrite"])
    assert cfg.fed.rounds == 7 and cfg.train.lr == 0.5 and cfg.runtime.overwrite is True
    assert cfg.fed.clients_per_round == 0.25 and isinstance(cfg.fed.clients_per_round, float)
    cfg = parse_args(["--clients-per-round", "3"])
    assert cfg.fed.clients_per_round == 3 and isinstance(cfg.fed.clients_per_round, int)


def _write(tmp_path, data) -> str:
    path = tmp_path / "job.toml"
    path.write_text(tomli_w.dumps(data) if isinstance(data, dict) else data)
    return str(path)


def test_toml_then_flags_override(tmp_path):
    path = _write(tmp_path, {"fed": {"rounds": 9, "seed": 4}, "train": {"lr": 1}})
    cfg = parse_args(["--config", path, "--seed", "5"])
    assert cfg.fed.rounds == 9  # from the file
    assert cfg.fed.seed == 5  # flag wins
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # int accepted for a float


def test_resolved_toml_round_trips(tmp_path):
    cfg = parse_args(["--rounds", "3", "--clients-per-round", "0.5", "--out", "x"])
    path = _write(tmp_path, to_toml(cfg))
    assert parse_args(["--config", path]) == cfg


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[fed]\nrounds = = 3\n", "not valid TOML"),
        ("[fed]\nroundz = 3\n", "unknown key 'roundz'.*did you mean rounds"),
        ("[feed]\nrounds = 3\n", r"unknown section \[feed\].*did you mean fed"),
        ('[fed]\nrounds = "3"\n', r"fed.rounds \(--rounds\): expected an integer"),
        ("[train]\nlr = true\n", r"train.lr \(--lr\): expected a number"),
        ("[train]\nlr = 0.1\n[train.x]\n", "unknown key 'x'"),
    ],
)
def test_bad_toml_is_a_one_line_error(tmp_path, text, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        load_toml(_write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="file not found"):
        parse_args(["--config", "/nonexistent/job.toml"])


@pytest.mark.parametrize(
    ("argv", "pattern"),
    [
        (["--roundz", "3"], "unknown flag --roundz.*did you mean --rounds"),
        (["--rounds", "x"], "invalid int value"),
        (["--rounds"], "expected one argument"),
    ],
)
def test_bad_flags(argv, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--rounds", "0"], "fed.rounds (--rounds)"),
        (["--rounds", "-3"], "fed.rounds (--rounds)"),
        (["--num-clients", "0"], "fed.num_clients"),
        (["--clients-per-round", "31"], "fed.clients_per_round"),
        (["--clients-per-round", "0"], "fed.clients_per_round"),
        (["--clients-per-round", "1.5"], "fed.clients_per_round"),
        (["--clients-per-round", "0.0"], "fed.clients_per_round"),
        (["--lr", "0"], "train.lr (--lr)"),
        (["--lr", "-1"], "train.lr"),
        (["--batch-size", "0"], "train.batch_size"),
        (["--momentum", "1"], "train.momentum"),
        (["--weight-decay", "-0.1"], "train.weight_decay"),
        (["--local-steps", "-1"], "train.local_steps"),
        (["--local-epochs", "0"], "train.local_epochs"),
        (["--eval-every", "-1"], "eval.eval_every"),
        (["--eval-fraction", "0"], "eval.eval_fraction"),
        (["--dataset", "cifar11"], "data.dataset"),
        (["--partition", "dirichlet"], "data.partition"),
        (["--model", "resnet"], "model.model"),
        (["--strategy", "fedavgg"], "strategy.strategy"),
        (["--weighting", "size"], "strategy.weighting"),
        (["--backend", "mpi"], "runtime.backend"),
        (["--device", "tpu"], "runtime.device"),
        (["--timeout", "0"], "runtime.timeout"),
        (["--server-lr", "0"], "strategy.server_lr"),
        (["--server-lr", "nan"], "strategy.server_lr"),
        (["--timeout", "inf"], "runtime.timeout"),
        (["--timeout", "0.5"], "runtime.timeout"),
        (["--join-timeout", "0"], "runtime.join_timeout"),
        (["--malloc", "jemalloc"], "runtime.malloc"),
        (["--synthetic-alpha", "inf"], "data.synthetic_alpha"),
        (
            ["--dataset", "digits", "--partition", "dirichlet", "--dirichlet-alpha", "0"],
            "data.dirichlet_alpha",
        ),
        (["--shards-per-client", "0"], "data.shards_per_client"),
        (["--min-samples", "-1"], "data.min_samples"),
        (["--client-test-fraction", "1"], "data.client_test_fraction"),
        (["--fake-shape", "3,a"], "data.fake_shape"),
        (["--norm", "layer"], "model.norm"),
        (["--checkpoint-every", "-1"], "runtime.checkpoint_every"),
        (["--keep-checkpoints", "0"], "runtime.keep_checkpoints"),
        (["--on-bad-update", "ignore"], "strategy.on_bad_update"),
        (["--max-update-norm", "-1"], "strategy.max_update_norm"),
    ],
)
def test_bad_values_name_the_field(argv, field):
    with pytest.raises(ConfigError) as e:
        checks.validate(parse_args(argv))
    msg = str(e.value)
    assert msg.startswith(field), msg
    assert "\n" not in msg and ";" in msg  # problem; fix


def test_unknown_choice_suggests_the_near_one():
    with pytest.raises(ConfigError, match="did you mean fedavg"):
        checks.validate(parse_args(["--strategy", "fedavgg"]))


def test_local_steps_may_replace_epochs():
    checks.validate(parse_args(["--local-epochs", "0", "--local-steps", "5"]))


def test_help_lists_choices_from_where_they_are_declared():
    """Literal[...] field types and the registries are the only lists of choices: --help shows
    exactly those, so help and code cannot drift."""
    registered = checks.registry_choices()
    text = " ".join(build_parser(registered).format_help().split())
    listed = 0
    for info in all_fields().values():
        names = literal_choices(info.type) or registered.get(info.name)
        if names:
            assert f"{info.flag} {{{','.join(names)}}}" in text, info.flag
            listed += 1
    assert listed >= 10 and "fedavg" in registered["strategy"]


def test_literal_fields_refuse_other_values_from_toml(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('[strategy]\nweighting = "equal"\n')
    with pytest.raises(ConfigError, match=r"strategy.weighting .*choose one of examples, uniform"):
        parse_args(["--config", str(path)]).validate()
