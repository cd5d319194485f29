"""ExpertSettings: defaults, LUS_EXPERT_* environment variables and documented fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from expert_service.settings import ExpertSettings
from lus.rpc.settings import ServingSettings
from lus.rpc.tls import ServerTls


def test_defaults() -> None:
    settings = ExpertSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 50052)
    assert settings.registry_dir == Path("./lus-registry")
    assert settings.max_message_bytes == 4 * 1024 * 1024
    assert settings.grace_s == 10.0  # ServingSettings' default, the same on both tiers
    assert settings.address == "127.0.0.1:50052"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUS_EXPERT_PORT", "0")
    monkeypatch.setenv("LUS_EXPERT_HOST", "::1")
    monkeypatch.setenv("LUS_EXPERT_REGISTRY_DIR", str(tmp_path))
    monkeypatch.setenv("LUS_EXPERT_GRACE_S", "1.5")
    settings = ExpertSettings()
    assert (settings.port, settings.registry_dir, settings.grace_s) == (0, tmp_path, 1.5)
    assert settings.address == "[::1]:0"


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        ExpertSettings(port=70000)
    with pytest.raises(ValidationError):
        ExpertSettings(max_message_bytes=0)


def test_every_field_is_documented() -> None:
    for name, field in ExpertSettings.model_fields.items():
        assert field.description, f"{name} has no docstring"


def test_team_tokens_and_registry_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUS_EXPERT_ADMIN_TOKENS", '{"radiology": "s3cret"}')
    monkeypatch.setenv("LUS_EXPERT_REGISTRY_URL", "redis://127.0.0.1:6379/0")
    settings = ExpertSettings()
    assert settings.team_tokens() == {"radiology": "s3cret"}
    assert "s3cret" not in repr(settings)  # tokens never show up in logs of the settings
    assert settings.registry_url == "redis://127.0.0.1:6379/0"


def test_logging_tls_and_grace_are_the_shared_serving_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert issubclass(ExpertSettings, ServingSettings)
    assert ExpertSettings().tls is None
    monkeypatch.setenv("LUS_EXPERT_LOG_JSON", "true")
    monkeypatch.setenv("LUS_EXPERT_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LUS_EXPERT_TLS_CERT_FILE", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("LUS_EXPERT_TLS_KEY_FILE", str(tmp_path / "key.pem"))
    monkeypatch.setenv("LUS_EXPERT_TLS_CLIENT_CA_FILE", str(tmp_path / "ca.pem"))
    settings = ExpertSettings()
    assert (settings.log_json, settings.log_level) == (True, "DEBUG")
    assert settings.tls == ServerTls(
        tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    )


def test_tls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tls_cert_file and tls_key_file"):
        ExpertSettings(tls_cert_file=tmp_path / "cert.pem")
    with pytest.raises(ValidationError, match="tls_client_ca_file needs"):
        ExpertSettings(tls_client_ca_file=tmp_path / "ca.pem")


def test_admin_port_is_its_own_and_ephemeral_with_an_ephemeral_public_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = ExpertSettings()
    assert (defaults.admin_port, defaults.admin_address) == (50053, "127.0.0.1:50053")
    assert ExpertSettings(port=0).admin_port == 0  # tests and demos: both ports free ones
    assert ExpertSettings(port=0, admin_port=7000).admin_port == 7000
    assert ExpertSettings(port=6000).admin_port == 50053
    with pytest.raises(ValidationError, match="admin_port must differ from port"):
        ExpertSettings(port=7000, admin_port=7000)
    monkeypatch.setenv("LUS_EXPERT_PORT", "0")
    assert ExpertSettings().admin_port == 0
    monkeypatch.setenv("LUS_EXPERT_ADMIN_PORT", "7001")
    assert ExpertSettings().admin_port == 7001
