"""A CONFIG argument that is not a file names a packaged config: ``adult``, ``adult.yaml``, ``configs/adult.yaml``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fairdistill.config import DEFAULT_CONFIG, PACKAGED_CONFIGS, load_config, packaged_configs, resolve_config
from fairdistill.errors import ConfigError


def test_packaged_configs_are_listed() -> None:
    assert {"adult", "default", "kd-zoo"} <= set(packaged_configs())


@pytest.mark.parametrize("given", ["adult", "adult.yaml", "adult.yml", "configs/adult.yaml", "configs/adult"])
def test_bare_names_resolve_to_the_packaged_config(tmp_path: Path, monkeypatch, given: str) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert resolve_config(given) == PACKAGED_CONFIGS / "adult.yaml"
    assert load_config(given).data.name == "adult"


def test_none_is_the_embedded_default() -> None:
    assert resolve_config(None) == DEFAULT_CONFIG


def test_a_real_file_wins_over_a_packaged_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("adult").write_text("name: mine\n")
    assert resolve_config("adult") == Path("adult")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "kd-zoo.yaml").write_text("name: mine\n")
    assert resolve_config("configs/kd-zoo.yaml") == Path("configs/kd-zoo.yaml")


def test_unknown_name_lists_packaged_configs_with_a_suggestion(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # the YAML files of the source tree's configs folder, listed here without the package's own lookup
    shipped = ", ".join(sorted(p.stem for p in (Path(__file__).parents[2] / "src/fairdistill/configs").glob("*.yaml")))
    assert shipped.startswith("adult, ") and "default" in shipped and "kd-zoo" in shipped
    with pytest.raises(ConfigError) as caught:
        load_config("kd-zo")
    assert "no packaged config is named 'kd-zo'. Did you mean 'kd-zoo'? " in str(caught.value)
    assert f"Packaged configs: {shipped}" in str(caught.value)


def test_other_missing_paths_keep_the_plain_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope[/\\]adult\.yaml$"):
        load_config(tmp_path / "nope" / "adult.yaml")
