"""When tracing turns on (``lus.rpc.tracing``): the endpoint's sources, and a missing extra."""

from __future__ import annotations

import logging
import sys

import pytest

from lus.rpc import tracing
from lus.rpc.tracing import configure_tracing, is_traced, otlp_endpoint

ON = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}


def test_no_endpoint_anywhere_means_off() -> None:
    assert otlp_endpoint(None, {}) is None
    assert otlp_endpoint("", {}) is None
    assert configure_tracing(None, "lus-test", environ={}) is None


def test_the_tier_setting_wins_then_the_traces_variable_then_the_general_one() -> None:
    assert otlp_endpoint(None, ON) == "http://collector:4317"
    both = {**ON, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317"}
    assert otlp_endpoint(None, both) == "http://traces:4317"
    assert otlp_endpoint("http://mine:4317", both) == "http://mine:4317"


def test_the_sdk_switch_turns_it_off_whatever_is_set() -> None:
    assert otlp_endpoint("http://mine:4317", {**ON, "OTEL_SDK_DISABLED": "true"}) is None
    assert otlp_endpoint(None, {**ON, "OTEL_SDK_DISABLED": "TRUE "}) is None


def test_probes_and_reflection_get_no_spans() -> None:
    assert not is_traced("/grpc.health.v1.Health/Check")
    assert not is_traced("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert is_traced("/lus.expert.v1.ExpertService/Predict")


@pytest.fixture
def without_the_otel_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """opentelemetry's SDK as if not installed (None in sys.modules fails its import)."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    monkeypatch.setattr(tracing, "_installed", None)


@pytest.mark.usefixtures("without_the_otel_extra")
def test_a_tier_endpoint_without_the_extra_stops_the_start() -> None:
    with pytest.raises(ValueError, match=r"lus-serving\[otel\]"):
        configure_tracing("http://collector:4317", "lus-test", environ={})


@pytest.mark.usefixtures("without_the_otel_extra")
def test_a_standard_variable_without_the_extra_only_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="lus.rpc.tracing"):
        assert configure_tracing(None, "lus-test", environ=ON) is None
    assert "opentelemetry is not installed" in caplog.text
