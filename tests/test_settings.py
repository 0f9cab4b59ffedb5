"""Settings: YAML file, environment overrides, named errors."""

from __future__ import annotations

import pytest
import yaml

from connector.errors import ConfigError
from connector.settings import Settings, bundled_path, load_settings


def test_the_example_documents_every_key():
    text = bundled_path("settings.example.yaml").read_text()
    document = yaml.safe_load(text)

    def keys(model: type, prefix: str = "") -> list[str]:
        out = []
        for name, field in model.model_fields.items():
            out.append(prefix + name)
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                out.extend(keys(annotation, prefix + name + "."))
        return out

    for key in keys(Settings):
        node = document
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"settings.example.yaml lacks '{key}'"
            node = node[part]


def test_environment_overrides_the_file_nested_with_double_underscores(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("workers: 3\nproviders:\n  sixsense:\n    default_country: GB\n    max_in_flight: 2\n")
    monkeypatch.setenv("CONNECTOR_PROVIDERS__SIXSENSE__MAX_IN_FLIGHT", "5")
    monkeypatch.setenv("CONNECTOR_PROVIDERS__SIXSENSE__API_TOKEN", "tok-from-env-123")
    settings = load_settings(path)
    assert settings.workers == 3
    assert settings.providers.sixsense.default_country == "GB"
    assert settings.providers.sixsense.max_in_flight == 5
    assert settings.providers.sixsense.api_token.get_secret_value() == "tok-from-env-123"
    assert "tok-from-env-123" not in repr(settings)
    assert "tok-from-env-123" in settings.secret_values()


def test_a_missing_file_is_named_with_the_fix(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml")
    assert "nope.yaml does not exist" in str(info.value) and "CONNECTOR_CONFIG" in str(info.value)


def test_an_empty_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_settings(path).window.length_minutes == 120


def test_a_top_level_list_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of keys at the top level"):
        load_settings(path)
