"""``lus train expert --server``: fit an expert on the expert tier (TrainExpert) and follow the job.

Builds the request and describes the finished job; the calls go through
``lus.clients.expert.ExpertAdminClient`` over one channel (pick-first: one connection, one
replica), since the job lives in the memory of the replica that took it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
import numpy as np

from lus.biomarker.v1 import schema_pb2
from lus.errors import InvalidInput
from lus.expert.v1 import expert_service_pb2 as epb

TOKEN_VARIABLE = "LUS_ADMIN_TOKEN"
"""Environment variable the CLI reads the team's bearer token from when ``--token`` is unset."""


def training_request(
    vectors: np.ndarray,
    labels: list[str],
    patients: list[str],
    models: list[str],
    *,
    task: str,
    schema_id: str,
    family: str = "zoo",
    seed: int = 0,
    description: str = "",
    training_data: str = "",
    notice: str = "",
    promote_to: str = "",
    label_column: str = "",
    label_definition: str = "",
    allow_class_change: bool = False,
) -> epb.TrainExpertRequest:
    """A ``TrainExpertRequest`` carrying one labelled vector per row, each naming the biomarker
    model that made it (``models``): the server records them as the expert's lineage."""
    if len(patients) != len(labels):
        raise InvalidInput("training on the server needs a patient id per vector")
    if len(models) != len(labels):
        raise InvalidInput("training on the server needs the biomarker model of every vector")
    request = epb.TrainExpertRequest(
        task=task,
        schema_id=schema_id,
        family=family,
        seed=seed,
        description=description,
        training_data=training_data,
        notice=notice,
        promote_to=promote_to,
        label_column=label_column,
        label_definition=label_definition,
        allow_class_change=allow_class_change,
    )
    add = request.examples.add
    rows = np.asarray(vectors).tolist()
    for row, label, patient, model in zip(rows, labels, patients, models, strict=True):
        vector = schema_pb2.BiomarkerVector(values=row, model=schema_pb2.ModelRef(version=model))
        add(vector=vector, label=label, patient_id=patient)
    return request


def describe_job(job: epb.TrainingJob) -> str:
    """One line on a finished job: the registered version and its metrics, or why it failed."""
    if job.state == epb.TRAINING_JOB_STATE_SUCCEEDED:
        card = job.card
        metrics = ", ".join(f"{k} {v:.3g}" for k, v in sorted(card.metrics.items()))
        aliases = ", ".join(f"{k} -> v{v}" for k, v in sorted(card.aliases.items()))
        line = f"registered {card.task} v{card.version} ({card.model_family}): {metrics}"
        line += f"; fit on biomarker model {', '.join(card.lineage.biomarker_models)}"
        line += f"; aliases {aliases}" if aliases else ""
        if card.version not in card.aliases.values():
            line += (
                f"; no alias points to v{card.version} yet (a shared Redis registry serves it "
                "only once promoted)"
            )
        return line
    code = grpc.StatusCode.INTERNAL
    for status in grpc.StatusCode:
        if status.value[0] == job.error_code:
            code = status
    return f"training job {job.job_id} failed ({code.name}): {job.error}"


def check_token_transport(args: argparse.Namespace) -> None:
    """Before ``lus train expert --server`` sends anything: refuse to send the team token in
    plaintext, and read it from ``--token-file`` when given.

    A bearer token sent without TLS can be read by anyone on the path and replayed (issue 16),
    so plaintext needs ``--insecure`` (a local demo stack). ``--token`` on the command line is
    visible to every user of the machine in the process list: ``--token-file`` or
    ``$LUS_ADMIN_TOKEN`` are preferred, and a warning says so.

    Raises:
        InvalidInput: No ``--ca-file`` and no ``--insecure``, or an unreadable token file.
    """
    if args.ca_file is None and not args.insecure:
        raise InvalidInput(
            "--server would send the team token in plaintext: give --ca-file (the CA that "
            "signed the admin port's certificate), or --insecure for a local, trusted network"
        )
    if args.token_file is not None:
        try:
            args.token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInput(f"--token-file is unreadable: {type(err).__name__}") from None
    elif args.token:
        print(
            f"warning: --token is visible in the process list; prefer --token-file or "
            f"${TOKEN_VARIABLE}",
            file=sys.stderr,
        )
