"""Issue 16, token configuration traps: empty team names, shared and short tokens are refused
at start-up; tokens rotate from a file without a restart; no process the server starts
inherits them; the CLI sends no token in plaintext unless told to."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import grpc
import numpy as np
import pytest

from expert_service.admin_servicer import ExpertAdminServicer
from expert_service.auth import TeamTokens
from expert_service.predictor import ExpertPredictor
from expert_service.registry import LocalRegistry
from expert_service.server import create_server
from expert_service.settings import ExpertSettings
from expert_service.training.jobs import Progress
from expert_service.training.worker import FitOutcome, FitRequest, ProcessFitter
from lus.errors import InvalidInput, PermissionDenied
from lus.expert.v1 import expert_service_pb2 as pb
from lus.expert.v1 import expert_service_pb2_grpc as pb_grpc
from lus_cli import cli
from tests.integration.expert_service.test_api import _draft, _expert

SECRET_VARIABLE = "LUS_EXPERT_ADMIN_TOKENS"


def _start(tmp_path: Path, **settings: object) -> None:
    async def main() -> None:
        config = ExpertSettings(port=0, registry_dir=tmp_path / "reg", **settings)  # type: ignore[arg-type]
        server = await create_server(config)
        await server.stop(None)

    asyncio.run(main())


def test_an_empty_team_name_stops_the_start(tmp_path: Path) -> None:
    """The reported trap: team "" was accepted, then passed the owner check on any task (the
    registry takes an empty owner for "no owner yet") and promoted. Now the server refuses to
    start, naming the problem and never the token."""
    tokens = {"": "empty-team-token", "radiology": "radiology-token"}
    with pytest.raises(ValueError, match="team name '' is not valid") as caught:
        _start(tmp_path, admin_tokens=tokens)
    assert "empty-team-token" not in str(caught.value)


def test_shared_and_short_tokens_stop_the_start(tmp_path: Path) -> None:
    shared = {"radiology": "one-token-for-two", "cardiology": "one-token-for-two"}
    with pytest.raises(ValueError, match="'radiology' and 'cardiology' share one admin token"):
        _start(tmp_path, admin_tokens=shared)
    with pytest.raises(ValueError, match="has 5 characters; at least 10") as caught:
        _start(tmp_path, admin_tokens={"radiology": "short"})
    assert "short'" not in str(caught.value)


def test_publishing_never_promotes_for_an_empty_team(tmp_path: Path) -> None:
    """``_publish`` authorises on its own, even if an empty team name got that far."""
    registry = LocalRegistry(tmp_path / "reg")
    onnx, summary = _expert(0)
    registry.register(_draft("covid", onnx, summary), owner="radiology")
    servicer = ExpertAdminServicer(ExpertPredictor(registry), TeamTokens({}))
    with pytest.raises(PermissionDenied):
        servicer._publish("", _draft("covid", onnx, summary), "production")
    assert registry.task_state("covid").versions == (1,)


def test_tokens_rotate_from_a_file_without_a_restart(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({"radiology": "first-radiology-token"}))
    first = (("authorization", "Bearer first-radiology-token"),)
    second = (("authorization", "Bearer second-radiology-token-longer"),)

    async def main() -> None:
        config = ExpertSettings(
            port=0, registry_dir=tmp_path / "reg", admin_tokens_file=tokens_file
        )
        server = await create_server(config)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.admin_port}") as channel:
                admin = pb_grpc.ExpertAdminServiceStub(channel)
                ask = pb.GetTrainingJobRequest(job_id="none")

                async def code(metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await admin.GetTrainingJob(ask, metadata=metadata)
                    return caught.value.code()

                # Authenticated, then told there is no such job.
                assert await code(first) == grpc.StatusCode.NOT_FOUND
                tokens_file.write_text(json.dumps({"radiology": "second-radiology-token-longer"}))
                assert await code(first) == grpc.StatusCode.UNAUTHENTICATED
                assert await code(second) == grpc.StatusCode.NOT_FOUND
                # A bad new file (a short token) keeps the tokens in use.
                tokens_file.write_text(json.dumps({"radiology": "short"}))
                assert await code(second) == grpc.StatusCode.NOT_FOUND
        finally:
            await server.stop(None)

    asyncio.run(main())


def _report_environment(request: FitRequest, progress: Progress) -> FitOutcome:
    """A fit function that tells, as its refusal, which secret variables it can see."""
    seen = sorted(k for k in os.environ if k == SECRET_VARIABLE)
    raise InvalidInput(f"variables seen: {seen}")


def test_fitting_processes_inherit_no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reported: the spawned fitting process started with the server's environment, tokens
    included, and runs third-party code on callers' data."""
    monkeypatch.setenv(SECRET_VARIABLE, json.dumps({"radiology": "radiology-token"}))
    fitter = ProcessFitter(_report_environment)
    request = FitRequest(np.zeros((2, 3), np.float32), ("a", "b"), ("p", "q"), "logreg", 0)
    try:
        with pytest.raises(InvalidInput, match=r"variables seen: \[\]"):
            fitter.fit("job", request, lambda fraction, stage: None)
    finally:
        fitter.release()
    assert SECRET_VARIABLE not in os.environ  # gone from the server process too


def test_the_cli_sends_no_token_in_plaintext(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("radiology-token\n")
    base = ["train", "expert", "--task", "covid", "--vectors", str(tmp_path / "v.csv")]
    base += ["--server", "127.0.0.1:1", "--token-file", str(token_file)]
    assert cli.main(base) == 2
    err = capsys.readouterr().err
    assert "would send the team token in plaintext" in err and "--insecure" in err
    assert "radiology-token" not in err
