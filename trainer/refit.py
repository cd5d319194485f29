"""Refit a task's expert on the next biomarker model, gate it, and stage it for the release.

A new biomarker model makes other numbers for the same videos, so every expert must be refit
on its vectors before the model goes live (an expert answers only vectors of the models in its
lineage). The refit uses exactly what the production version was fit on: its stored training
set (``expert_service.training_set``), i.e. the same videos, labels and patient ids, with each
video's vector fetched from the new model by a ``VectorSource`` (the biomarker tier's feature
store by hash, else the video file re-extracted; ``trainer.refit_sources``).

The gate: fit with the same family and seed on the same patients gives the same patient-level
held-out split (``fit_expert`` splits on labels, patient ids and seed only), so the refit's
``heldout_*`` figures are measured on the very patients the production version's were. Each
must be no worse than production's by more than ``tolerance``; otherwise nothing is registered.
When examples are missing (allowed only up to a stated share), the set and so the split differ;
production's figures are then recomputed by fitting its own family on its own stored vectors
of the same remaining rows, so both sides are still measured on the same patients.

A refit that passes is registered with lineage ``biomarker_models=[new model]`` and pointed to
by ``staging``: it does not answer until ``lus experts release`` moves production.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import onnx
from tqdm import tqdm

from expert_service.card import GROUND_TRUTH, ExpertCard
from expert_service.lineage import training_lineage
from expert_service.registry.base import PRODUCTION, STAGING, ExpertRegistry
from expert_service.training_set import StoredTrainingSet
from lus.errors import FailedPrecondition, InvalidInput, SchemaMismatch
from trainer.experts import FittedExpert, fit_expert

DEFAULT_TOLERANCE = 0.02
"""Largest drop of a held-out figure (absolute, e.g. accuracy 0.88 -> 0.86) a refit may show."""
GATED_METRICS = ("heldout_accuracy", "heldout_roc_auc_macro")
"""Figures the gate compares: those measured on patients kept out of fitting."""
SHOWN_MISSING = 20
"""Messages list this many missing examples, then say how many more there are."""


@dataclass(frozen=True)
class ExampleRef:
    """Which video one stored example was, by whatever hashes the fit path knew.

    Attributes:
        row: Row of the stored training set (0-based).
        pixel_hash: The feature-store key of its decoded pixels, or "".
        content_sha256: sha256 of its file's bytes, or "".
        name_sha256: sha256 of its file name as the manifest writes it, or "".
    """

    row: int
    pixel_hash: str = ""
    content_sha256: str = ""
    name_sha256: str = ""

    @property
    def known(self) -> bool:
        """Whether anything says which video this was (a vector sent as numbers says not)."""
        return bool(self.pixel_hash or self.content_sha256 or self.name_sha256)

    def describe(self) -> str:
        """e.g. ``row 12 (pixel 3f2a1b0c9d8e, file sha256 -, name sha256 77aa01...)``."""
        parts = [
            f"{what} {value[:12] if value else '-'}"
            for what, value in (
                ("pixel", self.pixel_hash),
                ("file sha256", self.content_sha256),
                ("name sha256", self.name_sha256),
            )
        ]
        return f"row {self.row} ({', '.join(parts)})"


@dataclass(frozen=True)
class SourcedVector:
    """One video's vector as a biomarker model made it.

    Attributes:
        values: The vector.
        schema_id: Its biomarker schema.
        model_version: The served model that made it (``ModelRef.version``).
        via: How it was had, e.g. ``feature store`` or ``re-extracted``.
        pixel_hash: The video's pixel hash, when the source learnt it ("" otherwise).
        content_sha256: sha256 of the video file's bytes, when the source read it.
    """

    values: Sequence[float]
    schema_id: str
    model_version: str
    via: str
    pixel_hash: str = ""
    content_sha256: str = ""


class VectorUnavailable(Exception):
    """This one example's vector cannot be had from the new model; the message says why.

    Only for a reason that concerns the example (no stored vector and no file, a file the
    biomarker tier refuses); a source that cannot work at all (tier unreachable, model not
    served) raises a ``lus.errors.LusError`` and the refit stops.
    """


class VectorSource(Protocol):
    """Gets the vector of a stored example's video from a biomarker model version."""

    def vector(self, example: ExampleRef, model_version: str) -> SourcedVector:
        """Raises ``VectorUnavailable`` for an example it cannot get."""
        ...


@dataclass(frozen=True)
class MissingExample:
    """An example whose vector from the new model could not be had, and why."""

    ref: ExampleRef
    reason: str


@dataclass(frozen=True)
class MetricCheck:
    """One gated figure: production's, the refit's, and whether the drop is within tolerance."""

    name: str
    current: float
    refit: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return math.isfinite(self.refit) and self.refit >= self.current - self.tolerance

    def describe(self) -> str:
        verdict = "ok" if self.passed else f"WORSE by more than {self.tolerance:g}"
        return f"{self.name}: {self.current:.4f} -> {self.refit:.4f} ({verdict})"


@dataclass(frozen=True)
class Gate:
    """The comparison a refit must pass.

    Attributes:
        baseline: Where production's figures come from (its card, or a refit of its family
            on its own stored vectors of the same rows when examples are missing).
        checks: One per gated figure production reports.
        heldout: Patients' vectors held out, as ``n_heldout`` (the same on both sides).
    """

    baseline: str
    checks: tuple[MetricCheck, ...]
    heldout: int

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def describe(self) -> list[str]:
        return [
            f"gate ({self.baseline}; {self.heldout} held-out vectors, same patients both sides):",
            *(f"  {check.describe()}" for check in self.checks),
        ]


class RefitRefused(FailedPrecondition):
    """The refit was not registered; the message says why and what to do.

    Attributes:
        missing: Examples whose vectors could not be had (when that is why).
        gate: The failed comparison (when that is why).
    """

    def __init__(
        self, message: str, *, missing: Sequence[MissingExample] = (), gate: Gate | None = None
    ) -> None:
        super().__init__(message)
        self.missing = tuple(missing)
        self.gate = gate


@dataclass(frozen=True)
class RefitResult:
    """A refit that passed its gate and was staged.

    Attributes:
        card: The new version's card (lineage: the new biomarker model).
        from_version: The production version it was refit from.
        gate: The comparison it passed.
        missing: Examples left out (only up to the allowed share).
        via: How many vectors came each way, e.g. ``{"feature store": 80, "re-extracted": 20}``.
        pinned: Whether production had to be pinned to ``from_version`` first (a local
            registry serves its newest version while no production alias is set).
    """

    card: ExpertCard
    from_version: int
    gate: Gate
    missing: tuple[MissingExample, ...] = ()
    via: Mapping[str, int] = field(default_factory=dict)
    pinned: bool = False


def example_refs(stored: StoredTrainingSet) -> list[ExampleRef]:
    """One ``ExampleRef`` per stored row, in order."""
    return [ExampleRef(row, *stored.hashes(row)) for row in range(len(stored))]


def fetch_vectors(
    stored: StoredTrainingSet,
    to_model: str,
    source: VectorSource,
    *,
    schema_id: str,
    progress: bool = True,
) -> tuple[dict[int, SourcedVector], list[MissingExample]]:
    """Every stored example's vector from ``to_model``, and the examples it could not get.

    Raises:
        FailedPrecondition: The source answered with another model's vector.
        SchemaMismatch: A vector of another schema than the expert's.
        InvalidInput: A vector of the wrong length, or not of probabilities.
    """
    found: dict[int, SourcedVector] = {}
    missing: list[MissingExample] = []
    refs = example_refs(stored)
    for ref in tqdm(refs, desc=f"vectors of {to_model[:24]}", unit="video", disable=not progress):
        if not ref.known:
            missing.append(
                MissingExample(
                    ref, "no video hash or file name was kept (a vector sent as numbers)"
                )
            )
            continue
        try:
            item = source.vector(ref, to_model)
        except VectorUnavailable as err:
            missing.append(MissingExample(ref, str(err)))
            continue
        _check_vector(item, ref, to_model, schema_id, stored.n_features)
        found[ref.row] = item
    return found, missing


def _check_vector(
    item: SourcedVector, ref: ExampleRef, to_model: str, schema_id: str, width: int
) -> None:
    if item.model_version != to_model:
        raise FailedPrecondition(
            f"the biomarker tier answered {ref.describe()} with a vector of model "
            f"{item.model_version or '(none named)'}, not {to_model}; is {to_model} served?"
        )
    if item.schema_id != schema_id:
        raise SchemaMismatch(
            f"{ref.describe()}: vector of schema {item.schema_id}; the expert takes {schema_id}. "
            "A model of another schema needs new experts, not a refit"
        )
    values = np.asarray(item.values, dtype=np.float64)
    if values.shape != (width,) or not np.all((values >= 0.0) & (values <= 1.0)):
        raise InvalidInput(
            f"{ref.describe()}: the vector has {values.size} values (expected {width} "
            "probabilities in [0, 1])"
        )


def gate(
    current: Mapping[str, float], refit: Mapping[str, float], *, tolerance: float, baseline: str
) -> Gate:
    """Compare every held-out figure ``current`` reports with ``refit``'s.

    Raises:
        RefitRefused: ``current`` reports no held-out figure (its set allowed no patient-level
            split), so nothing fair can be compared.
    """
    names = [name for name in GATED_METRICS if name in current and math.isfinite(current[name])]
    if not names:
        raise RefitRefused(
            f"{baseline} reports no held-out figures ({', '.join(GATED_METRICS)}): its training "
            "set allowed no patient-level split, so a refit cannot be shown to be no worse. "
            "Fit a version on more patients first"
        )
    checks = tuple(
        MetricCheck(name, float(current[name]), float(refit.get(name, math.nan)), tolerance)
        for name in names
    )
    return Gate(baseline, checks, int(refit.get("n_heldout", 0)))


def refit_task(
    registry: ExpertRegistry,
    task: str,
    to_model: str,
    source: VectorSource,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    allow_missing: float = 0.0,
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> RefitResult:
    """Refit ``task``'s production version on ``to_model``'s vectors, gate it, stage it.

    Args:
        registry: Where the task lives; the refit is registered there too.
        task: The task.
        to_model: The next biomarker model's served version (``ModelRef.version``).
        source: Gets each example's vector from ``to_model``.
        tolerance: Largest allowed drop of any held-out figure (absolute).
        allow_missing: Largest share (0 to <1) of examples that may be left out because their
            vectors cannot be had; 0 (default) refuses the refit if any is missing.
        progress: Show progress bars (fetching vectors, fitting).
        say: Where progress lines go.

    Raises:
        RefitRefused: Too many examples missing (all listed), or a held-out figure worse than
            production's by more than ``tolerance``; nothing is registered.
        FailedPrecondition: No production version, it is already fit on ``to_model``, or it
            was fit on annotated findings (``ground-truth``): nothing to refit.
        NotFound: Unknown task, or its production version has no stored training set.
    """
    if not 0.0 <= allow_missing < 1.0:
        raise InvalidInput(f"allow_missing is a share in [0, 1), got {allow_missing}")
    if not 0.0 <= tolerance < 1.0:
        raise InvalidInput(f"tolerance is an absolute drop in [0, 1), got {tolerance}")
    state = registry.task_state(task)
    live = state.live_version()
    if live is None:
        raise FailedPrecondition(f"task {task!r} has no production version to refit")
    current = registry.card(task, live)
    fitted_on = current.lineage.biomarker_models if current.lineage is not None else ()
    if to_model in fitted_on:
        raise FailedPrecondition(f"{task} v{live} is already fit on biomarker model {to_model}")
    if GROUND_TRUTH in fitted_on:
        raise FailedPrecondition(
            f"{task} v{live} is fit on annotated findings ({GROUND_TRUTH}), not on a model's "
            "vectors: a new biomarker model does not change its inputs"
        )
    stored = registry.training_set(task, live)
    say(
        f"{task} v{live} ({current.model_family}, fit on {', '.join(fitted_on) or '?'}): "
        f"{len(stored)} stored examples; fetching their vectors from {to_model}"
    )

    found, missing = fetch_vectors(
        stored, to_model, source, schema_id=current.schema_id, progress=progress
    )
    allowed = math.floor(allow_missing * len(stored))
    if len(missing) > allowed:
        raise RefitRefused(
            _missing_message(task, live, to_model, missing, total=len(stored), allowed=allowed),
            missing=missing,
        )
    rows = sorted(found)
    kept = stored.take(rows)
    new_vectors = np.asarray([found[row].values for row in rows], dtype=np.float32)

    refit = _fit(kept, new_vectors, f"refit {task} on {to_model[:24]}", progress)
    baseline_metrics, baseline = dict(current.metrics), f"production v{live}'s card"
    if missing or not _same_split(current.metrics, refit.metrics):
        # Another set (or another library's split): measure production on the same rows.
        say(f"re-measuring v{live} on the same {len(rows)} examples and patients")
        baseline_metrics = _fit(kept, kept.vectors, f"re-measure v{live}", progress).metrics
        baseline = f"v{live}'s family refit on its own vectors of the same {len(rows)} examples"
    result_gate = gate(baseline_metrics, refit.metrics, tolerance=tolerance, baseline=baseline)
    if not result_gate.passed:
        failed = [check.describe() for check in result_gate.checks if not check.passed]
        raise RefitRefused(
            f"refit of {task} v{live} on {to_model} is worse than production beyond the "
            f"tolerance {tolerance:g}: {'; '.join(failed)}. Nothing was registered; keep "
            f"{to_model} out of production for this task, or investigate the model",
            gate=result_gate,
        )

    pinned = False
    if PRODUCTION not in state.aliases:
        # A local registry serves its newest version while no production alias is set: pin
        # production first, so registering the refit does not put it live.
        registry.promote(task, live, PRODUCTION)
        pinned = True
    # Stamped with what it was refit from and for: a next model that gives these examples the
    # very vectors of the current one (same weights under a new version) yields the same
    # fitted bytes, which the registry would refuse as a duplicate of the version it replaces.
    refit = replace(
        refit,
        onnx_bytes=_stamped(
            refit.onnx_bytes, {"lus.refit_of": f"{task} v{live}", "lus.biomarker_model": to_model}
        ),
    )
    card = registry.register(
        refit.draft(
            task,
            schema_id=current.schema_id,
            lineage=training_lineage(
                new_vectors,
                kept.labels,
                kept.patients,
                biomarker_models=[to_model],
                label_column=current.lineage.label_column if current.lineage else "",
                label_definition=current.lineage.label_definition if current.lineage else "",
            ),
            description=current.description,
            training_data=_training_data(
                task, live, to_model, current, n_rows=len(rows), missing=missing
            ),
            notice=current.notice,
            training_set=_new_training_set(kept, new_vectors, [found[row] for row in rows]),
        ),
        owner=state.owner,
    )
    registry.promote(task, card.version, STAGING)
    via: dict[str, int] = {}
    for row in rows:
        via[found[row].via] = via.get(found[row].via, 0) + 1
    return RefitResult(card, live, result_gate, tuple(missing), via, pinned)


def _fit(kept: StoredTrainingSet, vectors: np.ndarray, desc: str, progress: bool) -> FittedExpert:
    """``fit_expert`` with ``kept``'s labels, patients and fit settings on ``vectors``."""
    with tqdm(total=100, desc=desc, unit="%", disable=not progress) as bar:

        def show(fraction: float, stage: str) -> None:
            bar.update(max(0, round(100 * fraction) - bar.n))
            bar.set_postfix_str(stage[:40])

        return fit_expert(
            vectors,
            kept.labels,
            family=kept.fit.family,
            seed=kept.fit.seed,
            patient_ids=kept.patients,
            test_fraction=kept.fit.heldout_fraction,
            progress=show,
        )


def _stamped(onnx_bytes: bytes, properties: Mapping[str, str]) -> bytes:
    """``onnx_bytes`` with ``properties`` added to the model's metadata (answers unchanged)."""
    model = onnx.load_from_string(onnx_bytes)
    for key, value in properties.items():
        model.metadata_props.add(key=key, value=value)
    return bytes(model.SerializeToString())


def _same_split(current: Mapping[str, float], refit: Mapping[str, float]) -> bool:
    """Whether the refit held out as many vectors and fit as many as production did: with the
    same rows, labels, patients and seed they must, unless the splitting code changed."""
    return all(current.get(name) == refit.get(name) for name in ("n_fit", "n_heldout"))


def _missing_message(
    task: str,
    version: int,
    to_model: str,
    missing: list[MissingExample],
    *,
    total: int,
    allowed: int,
) -> str:
    shown = "; ".join(f"{m.ref.describe()}: {m.reason}" for m in missing[:SHOWN_MISSING])
    more = len(missing) - SHOWN_MISSING
    return (
        f"refit of {task} v{version} on {to_model}: {len(missing)} of {total} examples have no "
        f"vector from {to_model} (at most {allowed} may be left out): {shown}"
        + (f"; and {more} more" if more > 0 else "")
        + ". Give the videos (--videos MANIFEST), analyse them on the biomarker tier with "
        f"model_version={to_model}, or allow a share to be left out (--allow-missing)"
    )


def _training_data(
    task: str,
    version: int,
    to_model: str,
    current: ExpertCard,
    *,
    n_rows: int,
    missing: Sequence[MissingExample],
) -> str:
    text = (
        f"Refit of {task} v{version} on biomarker model {to_model}: {n_rows} of its "
        f"{n_rows + len(missing)} examples, same labels, patients and folds"
    )
    if missing:
        text += f" ({len(missing)} left out: no vector from {to_model})"
    return f"{text}. Originally: {current.training_data}" if current.training_data else text


def _new_training_set(
    kept: StoredTrainingSet, vectors: np.ndarray, items: Sequence[SourcedVector]
) -> StoredTrainingSet:
    """The refit's own training set: the new vectors, with every hash the refit learnt added
    to those kept, so the next refit finds more videos by hash."""

    def merged(old: tuple[str, ...], new: list[str]) -> tuple[str, ...]:
        return tuple((old[i] if old else "") or new[i] for i in range(len(new)))

    return StoredTrainingSet(
        vectors=vectors,
        labels=kept.labels,
        patients=kept.patients,
        fit=kept.fit,
        pixel_hashes=merged(kept.pixel_hashes, [item.pixel_hash for item in items]),
        content_sha256=merged(kept.content_sha256, [item.content_sha256 for item in items]),
        name_sha256=kept.name_sha256,
    )
