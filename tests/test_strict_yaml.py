"""The strict YAML reading and type checks both configuration files share."""

from __future__ import annotations

import pytest

from cdm_exporter.config.errors import ConfigError
from cdm_exporter.config.strict_yaml import mapping_of, parse_yaml, string, strings

SECRET = "SECRET-on-the-line"


def test_a_key_given_twice_is_refused_with_its_position() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(f"a: {SECRET}\nb: 1\na: 2\n".encode(), "f.yml", "file")
    assert caught.value.key == "file"
    assert caught.value.message == "f.yml:3:1: invalid YAML: the key 'a' is given twice"


def test_merged_keys_may_be_overridden_but_not_repeated() -> None:
    text = b"base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\n"
    assert parse_yaml(text, "f.yml") == {"base": {"x": 1, "y": 2}, "m": {"x": 1, "y": 3}}
    with pytest.raises(ConfigError, match="the key 'y' is given twice"):
        parse_yaml(b"base: &b {x: 1}\nm: {<<: *b, y: 3, y: 4}\n", "f.yml")


def test_a_yaml_error_never_quotes_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_yaml(f"a: {{b: {SECRET}: c}}\n".encode(), "f.yml")
    assert caught.value.message.startswith("f.yml:1:")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"regoin": 1}, "unknown key; did you mean 'region'?"),
        ({"zzz": 1}, "unknown key; allowed keys: region, project_id"),
        (
            {True: 1},
            "keys must be strings, got a boolean (YAML reads true/false/yes/no/on/off unquoted as booleans)",
        ),
        ([1], "expected a mapping with keys region, project_id, got a list"),
    ],
)
def test_mapping_of_names_the_first_bad_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        mapping_of(value, "t", ("region", "project_id"))
    assert caught.value.message == message


def test_type_errors_name_the_kind_never_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        string(12345, "k")
    assert caught.value.message == "expected a string, got an integer; put it in quotes"
    with pytest.raises(ConfigError, match="must not be empty"):
        string("", "k")
    assert string("", "k", empty=True) == ""
    with pytest.raises(ConfigError) as listed:
        strings(["a", 7], "k")
    assert listed.value.key == "k[1]"
