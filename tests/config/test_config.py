"""Tests for fedshield.config: defaults, dict/TOML loading, overrides, validation errors."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedshield
from fedshield.config import (
    QUICKSTART,
    ConfigError,
    DataConfig,
    ExperimentConfig,
    ServerConfig,
    TrainConfig,
    apply_overrides,
    default_config,
    from_dict,
    load_toml,
    parse_override,
)
from fedshield.engine import Hook


def _all_of(*parts: str) -> str:
    """A regex matching a message that contains every part (literally), in any order."""
    return "(?s)" + "".join(f"(?=.*{re.escape(p)})" for p in parts)


# --------------------------------------------------------------------------- defaults


def test_empty_dict_gives_the_dataclass_defaults() -> None:
    # Execute
    cfg = from_dict({})

    # Assert
    assert cfg == ExperimentConfig()
    assert cfg.data.partition == "dirichlet"
    assert cfg.server.rounds == 50
    assert cfg.train.lr == 0.05
    assert cfg.engine.backend == "auto"


def test_default_config_is_the_quickstart() -> None:
    # Execute
    cfg = default_config()

    # Assert: the QUICKSTART values, not the dataclass defaults, where they differ
    assert cfg.name == "quickstart"
    assert cfg.data.dataset == "mnist"
    assert cfg.data.num_clients == 20
    assert cfg.data.alpha == 0.5
    assert cfg.train.momentum == 0.9
    assert cfg.train.batch_size == 32
    assert cfg.server.rounds == 30
    assert cfg.server.clients_per_round == 10
    assert cfg.sampled_per_round == 10


def test_default_config_overrides_do_not_touch_quickstart() -> None:
    # Execute
    cfg = default_config(["server.rounds=5", "data.partition=iid"])

    # Assert
    assert cfg.server.rounds == 5
    assert cfg.data.partition == "iid"
    assert QUICKSTART["server"]["rounds"] == 30
    assert QUICKSTART["data"]["partition"] == "dirichlet"
    assert default_config().server.rounds == 30


# --------------------------------------------------------------------------- from_dict


def test_from_dict_sets_nested_values_and_keeps_other_defaults() -> None:
    # Prepare
    raw = {
        "name": "exp",
        "seed": 7,
        "data": {"dataset": "digits", "num_clients": 4, "partition": "shards"},
        "server": {"rounds": 3, "clients_per_round": 2, "optimizer": "fedadam"},
    }

    # Execute
    cfg = from_dict(raw)

    # Assert
    assert (cfg.name, cfg.seed) == ("exp", 7)
    assert cfg.data == DataConfig(dataset="digits", num_clients=4, partition="shards")
    assert cfg.server == ServerConfig(rounds=3, clients_per_round=2, optimizer="fedadam")
    assert cfg.train == TrainConfig()


def test_ints_are_accepted_and_converted_for_float_fields() -> None:
    # Execute
    cfg = from_dict({"train": {"lr": 1, "weight_decay": 0}, "server": {"lr": 2}})

    # Assert
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert cfg.train.weight_decay == 0.0 and type(cfg.train.weight_decay) is float
    assert cfg.server.lr == 2.0 and type(cfg.server.lr) is float


def test_client_fraction_sampling() -> None:
    # Prepare
    raw: dict[str, Any] = {
        "data": {"num_clients": 20},
        "server": {"clients_per_round": 0, "client_fraction": 0.25},
    }

    # Execute
    cfg = from_dict(raw)
    tiny = from_dict(apply_overrides(raw, ["server.client_fraction=0.01"]))

    # Assert: round(0.25 * 20) = 5; round(0.01 * 20) = 0 is lifted to 1
    assert cfg.sampled_per_round == 5
    assert tiny.sampled_per_round == 1


def test_lr_min_above_lr_is_fine_without_cosine() -> None:
    # Execute
    cfg = from_dict({"train": {"lr": 0.1, "lr_min": 0.2, "lr_schedule": "step"}})

    # Assert
    assert cfg.train.lr_min == 0.2


def test_configs_are_frozen() -> None:
    # Prepare
    cfg = default_config()

    # Execute / Assert
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 0.2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server = ServerConfig()  # type: ignore[misc]
    assert cfg.train.lr == 0.05


def test_to_dict_round_trip() -> None:
    # Prepare
    cfg = default_config(
        ["train.lr_schedule=cosine", "train.lr_min=0.001", "server.optimizer=fedavgm"]
    )

    # Execute
    d = cfg.to_dict()
    again = from_dict(json.loads(json.dumps(d)))

    # Assert
    assert isinstance(d["train"], dict)
    assert d["train"]["lr_schedule"] == "cosine"
    assert again == cfg


@settings(max_examples=40, deadline=None)
@given(
    rounds=st.integers(1, 10_000),
    num_clients=st.integers(1, 500),
    lr=st.floats(1e-6, 10.0, allow_nan=False),
    momentum=st.floats(0.0, 0.999),
    partition=st.sampled_from(["iid", "dirichlet", "shards"]),
    per_client=st.booleans(),
)
def test_to_dict_round_trip_property(
    rounds: int, num_clients: int, lr: float, momentum: float, partition: str, per_client: bool
) -> None:
    # Prepare
    raw = {
        "data": {"num_clients": num_clients, "partition": partition},
        "train": {"lr": lr, "momentum": momentum},
        "server": {"rounds": rounds, "clients_per_round": 1},
        "eval": {"per_client": per_client},
    }
    cfg = from_dict(raw)

    # Execute
    again = from_dict(cfg.to_dict())

    # Assert
    assert again == cfg
    assert again.train.lr == lr and again.server.rounds == rounds


# --------------------------------------------------------------------------- TOML


def test_load_toml(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "exp.toml"
    path.write_text(
        'name = "t"\nseed = 3\n\n[data]\ndataset = "digits"\nnum_clients = 8\n'
        'partition = "iid"\n\n[train]\nlr = 1\n\n[server]\nrounds = 4\nclients_per_round = 2\n'
        "\n[output]\nplot = false\n",
        encoding="utf-8",
    )

    # Execute
    cfg = load_toml(path)

    # Assert
    assert (cfg.name, cfg.seed) == ("t", 3)
    assert cfg.data == DataConfig(dataset="digits", num_clients=8, partition="iid")
    assert cfg.train.lr == 1.0 and type(cfg.train.lr) is float
    assert cfg.server.rounds == 4
    assert cfg.output.plot is False
    assert cfg.output.checkpoint is True


def test_load_toml_overrides_win_over_the_file(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "exp.toml"
    path.write_text("[server]\nrounds = 3\n[data]\npartition = 'shards'\n", encoding="utf-8")

    # Execute
    cfg = load_toml(str(path), ["server.rounds=7", "data.partition=iid", "train.lr=0.1"])

    # Assert
    assert cfg.server.rounds == 7
    assert cfg.data.partition == "iid"
    assert cfg.train.lr == 0.1


def test_load_toml_missing_file(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "nope.toml"

    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of(str(path), "does not exist")):
        load_toml(path)


def test_load_toml_invalid_syntax(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nrounds = = 3\n", encoding="utf-8")

    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of(str(path), "not valid TOML")):
        load_toml(path)


def test_load_toml_reports_schema_errors(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "exp.toml"
    path.write_text("[server]\nrounds = 0\n", encoding="utf-8")

    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of("server.rounds", "= 0", ">= 1")):
        load_toml(path)


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize(
    ("item", "path", "value"),
    [
        ("server.rounds=5", ["server", "rounds"], 5),
        ("train.lr=0.1", ["train", "lr"], 0.1),
        ("data.partition=iid", ["data", "partition"], "iid"),
        ("output.plot=false", ["output", "plot"], False),
        ('name="my exp"', ["name"], "my exp"),
        (" server.rounds = 12 ", ["server", "rounds"], 12),
        ("name=a=b", ["name"], "a=b"),
    ],
)
def test_parse_override(item: str, path: list[str], value: Any) -> None:
    # Execute
    got_path, got_value = parse_override(item)

    # Assert
    assert got_path == path
    assert got_value == value
    assert type(got_value) is type(value)


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ("server.rounds", _all_of("'server.rounds'", "section.key=value")),
        ("=5", _all_of("'=5'", "empty key")),
        ("server..rounds=5", _all_of("'server..rounds=5'", "empty key")),
    ],
)
def test_parse_override_errors(item: str, match: str) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=match):
        parse_override(item)


def test_apply_overrides_deep_copies_and_creates_sections() -> None:
    # Prepare
    raw: dict[str, Any] = {"server": {"rounds": 3}, "data": {"num_clients": 4}}

    # Execute
    out = apply_overrides(raw, ["server.rounds=5", "train.lr=0.1", "output.plot=false"])

    # Assert
    assert out == {
        "server": {"rounds": 5},
        "data": {"num_clients": 4},
        "train": {"lr": 0.1},
        "output": {"plot": False},
    }
    assert raw == {"server": {"rounds": 3}, "data": {"num_clients": 4}}


def test_apply_overrides_later_wins() -> None:
    # Execute
    out = apply_overrides({}, ["server.rounds=5", "server.rounds=6"])

    # Assert
    assert out == {"server": {"rounds": 6}}


def test_apply_overrides_into_a_scalar_is_an_error() -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of("data.partition=iid", "'data'", "not a section")):
        apply_overrides({"data": 5}, ["data.partition=iid"])


def test_override_with_bare_string_for_int_fails_validation() -> None:
    # Prepare
    raw = apply_overrides({}, ["server.rounds=many"])

    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of("server.rounds", "'many'", "an integer")):
        from_dict(raw)


# --------------------------------------------------------------------------- mistakes

MISTAKES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (
        "unknown top-level key",
        {"trian": {"lr": 0.1}},
        (
            "'trian'",
            "did you mean 'train'",
            "top level",
            "attack, data, defense, engine, eval, fedqsn, fedre, model",
        ),
    ),
    (
        "unknown key in a section",
        {"data": {"partiton": "iid"}},
        (
            "'data.partiton'",
            "did you mean 'partition'",
            "alpha, dataset, min_client_size, num_clients, partition, shards_per_client",
        ),
    ),
    (
        "string for int",
        {"server": {"rounds": "5"}},
        ("server.rounds", "'5'", "(str)", "expected an integer"),
    ),
    (
        "bool for int",
        {"data": {"num_clients": True}},
        ("data.num_clients", "true", "(bool)", "expected an integer"),
    ),
    (
        "int for bool",
        {"output": {"plot": 1}},
        ("output.plot", "= 1", "(int)", "a boolean"),
    ),
    (
        "float for int",
        {"train": {"batch_size": 32.0}},
        ("train.batch_size", "32.0", "(float)", "expected an integer"),
    ),
    (
        "bool for float",
        {"train": {"lr": True}},
        ("train.lr", "true", "(bool)", "a number"),
    ),
    (
        "partition not in choices",
        {"data": {"partition": "random"}},
        ("data.partition", "'random'", "'iid', 'dirichlet', 'shards'"),
    ),
    (
        "backend not in choices",
        {"engine": {"backend": "cuda"}},
        ("engine.backend", "'cuda'", "'auto', 'sequential', 'vmap', 'fused'"),
    ),
    (
        "server optimizer not in choices",
        {"server": {"optimizer": "adam"}},
        ("server.optimizer", "'adam'", "'sgd', 'fedavgm', 'fedadam'"),
    ),
    (
        "lr_schedule not in choices",
        {"train": {"lr_schedule": "linear"}},
        ("train.lr_schedule", "'linear'", "'constant', 'step', 'exponential', 'cosine'"),
    ),
    (
        "negative lr",
        {"train": {"lr": -0.1}},
        ("train.lr", "-0.1", "must be > 0.0"),
    ),
    (
        "zero lr",
        {"train": {"lr": 0}},
        ("train.lr", "= 0.0", "must be > 0.0"),
    ),
    (
        "nan lr",
        {"train": {"lr": float("nan")}},
        ("train.lr", "nan", "must be a finite number"),
    ),
    (
        "momentum = 1",
        {"train": {"momentum": 1.0}},
        ("train.momentum", "1.0", "must be < 1.0"),
    ),
    (
        "dropout = 1",
        {"server": {"dropout": 1.0}},
        ("server.dropout", "1.0", "must be < 1.0"),
    ),
    (
        "client_fraction > 1",
        {"server": {"clients_per_round": 0, "client_fraction": 1.5}},
        ("server.client_fraction", "1.5", "must be <= 1.0"),
    ),
    (
        "lr_decay > 1",
        {"train": {"lr_decay": 2}},
        ("train.lr_decay", "2.0", "must be <= 1.0"),
    ),
    (
        "negative seed",
        {"seed": -1},
        ("seed", "-1", "must be >= 0"),
    ),
    (
        "zero rounds",
        {"server": {"rounds": 0}},
        ("server.rounds", "= 0", "must be >= 1"),
    ),
    (
        "clients_per_round > num_clients",
        {"data": {"num_clients": 5}, "server": {"clients_per_round": 6}},
        ("server.clients_per_round = 6", "data.num_clients = 5", "1..5"),
    ),
    (
        "no client sampled",
        {"server": {"clients_per_round": 0, "client_fraction": 0.0}},
        (
            "server.clients_per_round = 0",
            "server.client_fraction = 0.0",
            "client_fraction in (0, 1]",
        ),
    ),
    (
        "both sampling modes set",
        {"server": {"clients_per_round": 5, "client_fraction": 0.5}},
        ("server.clients_per_round = 5", "client_fraction = 0.5", "set only one"),
    ),
    (
        "section given as a scalar",
        {"data": 5},
        ("data must be a table", "int 5"),
    ),
    (
        "scalar given as a section",
        {"seed": {"value": 1}},
        ("seed", "{'value': 1}", "(dict)", "expected an integer"),
    ),
    (
        "cosine lr_min > lr",
        {"train": {"lr_schedule": "cosine", "lr": 0.1, "lr_min": 0.2}},
        ("train.lr_min = 0.2", "train.lr = 0.1", "lr_min <= lr"),
    ),
]


@pytest.mark.parametrize(("raw", "parts"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_mistake_raises_config_error_naming_key_value_and_allowed(
    raw: dict[str, Any], parts: tuple[str, ...]
) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of(*parts)):
        from_dict(raw)


def test_config_error_is_a_value_error() -> None:
    # Execute / Assert
    with pytest.raises(ValueError):
        from_dict({"server": {"rounds": -3}})


def test_mistakes_in_toml_name_the_full_key(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "exp.toml"
    path.write_text("[engine]\nbakcend = 'vmap'\n", encoding="utf-8")

    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of("'engine.bakcend'", "did you mean 'backend'")):
        load_toml(path)


# --------------------------------------------------------------------------- run start


class _RecordingHook(Hook):
    """Records every round that starts: proves whether any training began."""

    name = "recorder"

    def __init__(self) -> None:
        self.rounds: list[int] = []

    def on_round_start(self, ctx: Any) -> None:
        self.rounds.append(ctx.round)


def _run_raw(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "data": {"dataset": "digits", "num_clients": 2},
        "server": {"rounds": 1, "clients_per_round": 1},
        "output": {"dir": str(tmp_path), "progress": False, "plot": False, "checkpoint": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


RUN_MISTAKES: list[tuple[str, dict[str, dict[str, Any]], tuple[str, ...]]] = [
    (
        "unknown dataset",
        {"data": {"dataset": "cifar1000"}},
        ("data.dataset", "'cifar1000'", "digits, documents, mnist"),
    ),
    (
        "unknown model",
        {"model": {"name": "resnet9000"}},
        ("model.name", "'resnet9000'", "cnn, lenet, logreg, mlp_2nn"),
    ),
    (
        "unknown aggregator",
        {"server": {"aggregator": "krumm"}},
        ("server.aggregator", "'krumm'", "known aggregators are", "mean"),
    ),
    (
        "more clients than samples",
        {"data": {"num_clients": 2000}},
        ("data.num_clients = 2000", "1437 training samples", "'digits'"),
    ),
    (
        "fused backend with a cnn",
        {"model": {"name": "cnn"}, "engine": {"backend": "fused"}},
        ("engine.backend", "'fused'", "needs an MLP", "'vmap' or 'auto'"),
    ),
]


@pytest.mark.parametrize(
    ("sections", "parts"), [m[1:] for m in RUN_MISTAKES], ids=[m[0] for m in RUN_MISTAKES]
)
def test_run_experiment_fails_fast_with_config_error(
    tmp_path: Path, sections: dict[str, dict[str, Any]], parts: tuple[str, ...]
) -> None:
    # Prepare
    cfg = from_dict(_run_raw(tmp_path, **sections))
    hook = _RecordingHook()

    # Execute / Assert
    with pytest.raises(ConfigError, match=_all_of(*parts)):
        fedshield.run_experiment(cfg, hooks=[hook])
    assert hook.rounds == [], "a round started before the config error"
    assert list(tmp_path.iterdir()) == [], "a run directory was written before the error"


def test_run_experiment_control_valid_config_starts_a_round(tmp_path: Path) -> None:
    # Prepare: the same setup as the failing cases, but valid (logreg keeps it quick)
    cfg = from_dict(_run_raw(tmp_path, model={"name": "logreg"}))
    hook = _RecordingHook()

    # Execute
    fedshield.run_experiment(cfg, hooks=[hook])

    # Assert: the recorder and the directory check above do detect a started run
    assert hook.rounds == [0]
    assert len(list(tmp_path.iterdir())) == 1


def test_infinite_float_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr = inf .*finite"):
        from_dict({"train": {"lr": float("inf")}})


def test_sections_validate_when_built_directly() -> None:
    from fedshield.config import TrainConfig

    with pytest.raises(ConfigError, match=r"train\.lr = -1 .*> 0\.0"):
        TrainConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"train\.lr_schedule = 'linear'"):
        dataclasses.replace(TrainConfig(), lr_schedule="linear")


def test_override_accepts_leading_dot_floats() -> None:
    assert from_dict(apply_overrides({}, ["train.lr=.5"])).train.lr == 0.5
