"""Config loading, validation messages and --set overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairdistill.config import DEFAULT_CONFIG, apply_override, load_config, load_yaml, parse_config
from fairdistill.errors import ConfigError

BASE = {
    "name": "t",
    "data": {"name": "adult"},
    "methods": [{"name": "erm"}, {"name": "kd", "loss": {"kind": "kd", "tau": 2.0}}],
}


def test_default_config_is_valid_and_uses_colored_mnist() -> None:
    config = load_config()
    assert DEFAULT_CONFIG.is_file()
    assert config.data.name == "colored-mnist"
    assert [m.name for m in config.methods][:2] == ["erm", "kd"]


def test_override_addresses_list_entries_by_name() -> None:
    raw = apply_override(BASE, "methods.kd.loss.tau=4")
    assert raw["methods"][1]["loss"]["tau"] == 4
    assert BASE["methods"][1]["loss"]["tau"] == 2.0  # the input is not mutated


def test_override_by_position_and_yaml_values() -> None:
    raw = apply_override(BASE, "methods.0.train={epochs: 3, lr: 0.01}")
    assert raw["methods"][0]["train"] == {"epochs": 3, "lr": 0.01}
    raw = apply_override(BASE, "teacher.model.hidden=[8, 4]")
    assert raw["teacher"]["model"]["hidden"] == [8, 4]
    raw = apply_override(BASE, "data.name=colored-mnist")
    assert parse_config(raw).data.name == "colored-mnist"


def test_override_unknown_list_entry_lists_the_names() -> None:
    with pytest.raises(ConfigError, match=r"no list entry named 'dkd'; entries: erm, kd"):
        apply_override(BASE, "methods.dkd.loss.tau=4")


@pytest.mark.parametrize("bad", ["methods.kd.loss.tau", "=3", "a..b=1"])
def test_override_syntax_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        apply_override(BASE, bad)


def test_unknown_field_is_named_with_its_path() -> None:
    raw = apply_override(BASE, "teacher.train.epoks=3")
    with pytest.raises(ConfigError, match=r"teacher\.train\.epoks: unknown field"):
        parse_config(raw)


def test_wrong_type_names_the_field_and_the_value() -> None:
    raw = apply_override(BASE, "methods.kd.train.epochs=ten")
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    message = str(info.value)
    assert "methods.1(kd).train.epochs" in message
    assert "integer" in message and "'ten'" in message


@pytest.mark.parametrize("field,value", [("epochs", 0), ("epochs", -2), ("batch_size", 0), ("lr", 0)])
def test_non_positive_training_values_are_rejected(field: str, value: int) -> None:
    raw = apply_override(BASE, f"student.train.{field}={value}")
    with pytest.raises(ConfigError, match=rf"student\.train\.{field}: Input should be greater than 0"):
        parse_config(raw)


def test_duplicate_method_names_are_rejected() -> None:
    raw = dict(BASE, methods=[{"name": "kd"}, {"name": "kd"}])
    with pytest.raises(ConfigError, match="used twice"):
        parse_config(raw)


def test_missing_required_fields() -> None:
    with pytest.raises(ConfigError, match=r"data: required field is missing"):
        parse_config({"methods": [{"name": "erm"}]})
    with pytest.raises(ConfigError, match=r"methods: List should have at least 1 item"):
        parse_config({"data": {"name": "adult"}, "methods": []})


def test_invalid_yaml_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata: {name: adult\nmethods: []\n")
    with pytest.raises(ConfigError, match=r"invalid YAML in .*bad\.yaml at line \d+"):
        load_yaml(path)


def test_yaml_tags_that_would_run_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_yaml(path)


def test_exponent_floats_without_a_dot_are_numbers(tmp_path: Path) -> None:
    from fairdistill.config import yaml_data

    assert yaml_data("1e-3") == 0.001 and yaml_data("[5E4, -2.5e+3]") == [50000.0, -2500.0]
    assert yaml_data('"1e-3"') == "1e-3", "quoted stays a string"
    config = load_config(None, ["student.train.lr=3e-4"])
    assert config.student.train.lr == 0.0003


def test_method_recipe_names_every_part() -> None:
    from fairdistill.config import MethodConfig

    def recipe(entry: dict) -> str:
        return MethodConfig.model_validate(entry).recipe

    assert recipe({"name": "erm"}) == "erm"
    assert recipe({"name": "kd", "loss": {"kind": "kd", "tau": 2.0}}) == "kd"
    assert (
        recipe(
            {
                "name": "d",
                "loss": {"kind": "kd"},
                "weighting": {"kind": "early-readout", "score": "margin", "beta": 3.0},
            }
        )
        == "kd + early-readout(margin, beta=3)"
    )
    assert (
        recipe(
            {
                "name": "p",
                "loss": {"kind": "dkd"},
                "mixing": {"kind": "per-group-alpha", "by": "class"},
                "adversary": {"target": "attr", "input": "probs", "weight": 0.5},
            }
        )
        == "dkd + per-group-alpha(class) + adversary(probs, weight=0.5)"
    )
    assert (
        recipe(
            {"name": "w", "loss": {"kind": "kd"}, "weighting": {"kind": "x", "a": 1, "b": 2, "c": 3, "d": 4, "e": 5}}
        )
        == "kd + x(a=1, b=2, c=3, d=4, ...)"
    )


def test_resolved_recipe_adds_the_tap_the_weighting_chose() -> None:
    from types import SimpleNamespace

    from fairdistill.config import MethodConfig
    from fairdistill.experiment import resolved_recipe

    config = MethodConfig.model_validate(
        {"name": "dedier", "loss": {"kind": "kd"}, "weighting": {"kind": "early-readout", "score": "margin"}}
    )
    chose_block1 = SimpleNamespace(weighting=SimpleNamespace(tap="block1"))
    assert resolved_recipe(config, chose_block1) == "kd + early-readout(block1, margin)"
    given = MethodConfig.model_validate(
        {"name": "dedier", "loss": {"kind": "kd"}, "weighting": {"kind": "early-readout", "tap": "block2"}}
    )
    assert (
        resolved_recipe(given, SimpleNamespace(weighting=SimpleNamespace(tap="block2"))) == "kd + early-readout(block2)"
    )
