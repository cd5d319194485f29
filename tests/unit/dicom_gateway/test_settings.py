"""Gateway settings: pairs of TLS files, the outbox kind's URL, AE titles."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from dicom_gateway.settings import GatewaySettings


def test_defaults_are_a_local_gateway() -> None:
    settings = GatewaySettings()
    assert (settings.ae_title, settings.port, settings.allowed_calling_aes) == (
        "LUSGW", 11112, ["ORTHANC"],
    )  # fmt: skip
    assert settings.grpc_tls is None and settings.health_tls is None
    assert not settings.dicom_tls and not settings.destination_tls


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dicom_tls_cert_file": Path("c.pem")}, "dicom_tls_cert_file and dicom_tls_key_file"),
        ({"grpc_cert_file": Path("c.pem")}, "grpc_cert_file and grpc_key_file"),
        ({"outbox": "redis"}, "outbox redis needs outbox_redis_url"),
        ({"outbox": "redis", "outbox_redis_url": "redis://r"}, "needs outbox_key_file"),
        ({"retry_initial_s": 10.0, "retry_max_s": 1.0}, "retry_max_s must be at least"),
        ({"allowed_calling_aes": ["A" * 17]}, "not 1-16 characters"),
        ({"ae_title": "WAY-TOO-LONG-A-TITLE"}, "ae_title"),
    ],
)
def test_inconsistent_settings_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(**fields)  # type: ignore[arg-type]


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUS_GATEWAY_ALLOWED_CALLING_AES", '["PACS1", "PACS2"]')
    monkeypatch.setenv("LUS_GATEWAY_TASKS", '["severity"]')
    settings = GatewaySettings()
    assert settings.allowed_calling_aes == ["PACS1", "PACS2"]
    assert settings.tasks == ["severity"]
