"""The transport-free core of the expert tier: route a query to a loaded expert and answer it.

Every answer passes a lineage gate first (``lineage.ModelGate``): a vector from a biomarker model
the expert was not fit on (or does not list as compatible) is refused, never answered.

Serving never waits on the registry for a loaded expert: ``version=0`` goes through a routing
table (task, alias) -> version that ``refresh()`` rebuilds when the registry's revision changes.
A refresh loads the new targets first and swaps the table after, so the old version answers
until the new one is ready, and a failed load keeps the old route. Sessions live in a bounded
LRU shared by every task, bounded by count and by model bytes; a version not loaded yet is
loaded once however many calls ask for it at the same time (single flight).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from expert_service.answers import (
    DEFAULT_CONTRIBUTIONS,
    MatrixPrediction,
    MatrixQuery,
    Prediction,
    PredictQuery,
    TaskInfo,
)
from expert_service.errors import CorruptArtifact
from expert_service.explain import Explainer
from expert_service.limits import (
    ERROR_REPLY_BYTES,
    RequestLimits,
    answer_bytes,
    check_task,
    matrix_bytes,
)
from expert_service.lineage import ModelGate
from expert_service.model import OnnxExpert
from expert_service.registry.base import PRODUCTION, STAGING, ExpertRegistry
from expert_service.registry.common import resolve_alias
from expert_service.serving import Served, answer_matrix, answer_rows
from expert_service.validation import (
    check_matrix,
    check_schema,
    check_vector,
    feature_names,
    valid_rows,
)
from lus.errors import FailedPrecondition, InvalidInput, LusError, NotFound, NotReady
from lus.feature_store.base import owned_vector

if TYPE_CHECKING:  # the feature store is optional; its package is imported only when used
    from lus.feature_store.base import FeatureStore

__all__ = [
    "DEFAULT_CONTRIBUTIONS",
    "ExpertPredictor",
    "MatrixPrediction",
    "MatrixQuery",
    "PredictQuery",
    "Prediction",
    "TaskInfo",
]

logger = logging.getLogger(__name__)

NO_SUMMARY_NOTE = (
    "expert {task} v{version} was registered without a training summary: no biomarker "
    "contributions and no out-of-distribution check"
)


class ExpertPredictor:
    """Answers predictions from a registry, keeping recently used experts loaded.

    Thread-safe: the gRPC servicer calls it from the event loop and worker threads, and a
    watcher thread calls ``refresh``.

    Args:
        registry: Where experts are stored.
        max_loaded: How many ``(task, version)`` sessions stay in memory (least recently used
            ones are dropped first).
        feature_store: Where vectors of already-analysed videos are found by pixel hash.
        max_loaded_bytes: ONNX bytes of the sessions kept in memory (the most recently used
            one always stays).
    """

    def __init__(
        self,
        registry: ExpertRegistry,
        *,
        max_loaded: int = 32,
        feature_store: FeatureStore | None = None,
        max_loaded_bytes: int = 512 * 2**20,
    ) -> None:
        self.registry = registry
        self.max_loaded = max_loaded
        self.max_loaded_bytes = max_loaded_bytes
        self.feature_store = feature_store
        self.loads = 0
        """Sessions created since start (a cache that thrashes shows here)."""
        self._loaded: OrderedDict[tuple[str, int], Served] = OrderedDict()
        self._loading: dict[tuple[str, int], threading.Lock] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        # (task, alias) -> (version, alias label); replaced whole, never mutated in place.
        self._routes: dict[tuple[str, str], tuple[int, str]] = {}
        self._revision = -1

    def predict(
        self,
        task: str,
        version: int,
        schema_id: str,
        values: Sequence[float],
        *,
        biomarker_model: str,
        alias: str = "",
        max_contributions: int = DEFAULT_CONTRIBUTIONS,
    ) -> Prediction:
        """Run the expert ``task`` v``version`` (0 = what ``alias`` points to) on one vector.

        Args:
            biomarker_model: The biomarker model version that made ``values`` ("" = none
                named); it must be one the expert was fit on or lists as compatible.

        Raises:
            NotFound: Unknown task, version or alias (the message lists the known ones).
            SchemaMismatch: The vector's schema is not the expert's.
            FailedPrecondition: The vector's biomarker model is not one the expert may answer
                (``lineage.ModelGate``; the message names both).
            InvalidInput: Bad task name, wrong length, or values not finite / not in [0, 1].
            NotReady: The expert is not loaded and the registry is unreachable.
        """
        served, label = self._served(task, version, alias)
        row = check_vector(served.card, schema_id, values)
        model = served.gate.check(biomarker_model)
        return answer_rows(served, label, row, max_contributions, model)[0]

    def predict_query(self, query: PredictQuery) -> Prediction:
        """``predict`` for a query; a video hash is looked up under the expert's own biomarker
        model (``_with_vector``)."""
        served, label = self._served(query.task, query.version, query.alias)
        query = self._with_vector(query, served)
        row = check_vector(served.card, query.schema_id, query.values)
        model = served.gate.check(query.biomarker_model)
        return answer_rows(served, label, row, query.max_contributions, model)[0]

    def predict_batch(self, queries: Sequence[PredictQuery]) -> list[Prediction | LusError]:
        """Answer many queries; vectors for the same expert run as one batch.

        Returns one result per query, in order: a ``Prediction``, or the error for that query.
        """
        results: list[Prediction | LusError | None] = [None] * len(queries)
        resolved = list(queries)
        groups: dict[tuple[int, str, int, str], tuple[Served, list[int]]] = {}
        for i, asked in enumerate(queries):
            try:
                served, label = self._served(asked.task, asked.version, asked.alias)
                resolved[i] = query = self._with_vector(asked, served)
                check_schema(served.card, query.schema_id)
                if len(query.values) != served.card.n_features:
                    check_vector(served.card, query.schema_id, query.values)  # raises with why
                model = served.gate.check(query.biomarker_model)
            except LusError as err:
                results[i] = err
                continue
            key = (id(served), label, query.max_contributions, model)
            groups.setdefault(key, (served, []))[1].append(i)
        for (_, label, top_k, model), (served, indices) in groups.items():
            group = [resolved[i] for i in indices]
            self._answer_group(served, (label, top_k, model), group, indices, results)
        return [r for r in results if r is not None]

    def _answer_group(
        self,
        served: Served,
        how: tuple[str, int, str],
        group: list[PredictQuery],
        indices: list[int],
        results: list[Prediction | LusError | None],
    ) -> None:
        try:
            matrix = np.asarray([q.values for q in group], dtype=np.float64)
        except (TypeError, ValueError):
            matrix = np.full((len(group), served.card.n_features), np.nan)
        ok = valid_rows(matrix)
        for position in np.flatnonzero(~ok).tolist():
            query = group[position]
            try:
                check_vector(served.card, query.schema_id, query.values)
                results[indices[position]] = InvalidInput("vector values must be numbers")
            except LusError as err:
                results[indices[position]] = err
        if not ok.any():
            return
        rows = matrix[ok].astype(np.float32)
        answers = answer_rows(served, how[0], rows, how[1], how[2])
        for index, answer in zip(np.asarray(indices)[ok].tolist(), answers, strict=True):
            results[index] = answer

    def check_batch(
        self,
        queries: Sequence[PredictQuery],
        matrices: Sequence[MatrixQuery],
        limits: RequestLimits,
    ) -> None:
        """Refuse a batch too big to answer, before any of it is computed.

        First the vectors it holds (requests plus each matrix's ``n_vectors``), then its reply,
        estimated from each answering expert's card: classes, notice and the contributions
        asked for. An item that will fail counts as a short error.

        Raises:
            InvalidInput: Over ``limits.max_batch_rows`` vectors, or a reply estimated over
                ``limits.max_reply_bytes`` (the message names the setting).
        """
        limits.check_rows(len(queries) + sum(max(0, m.n_vectors) for m in matrices))
        sizes: dict[tuple[str, int, str, int], int] = {}
        total = 0
        for query in queries:
            key = (query.task, query.version, query.alias, query.max_contributions)
            if key not in sizes:
                sizes[key] = self._reply_size(key, 0)
            total += sizes[key]
        for matrix in matrices:
            key = (matrix.task, matrix.version, matrix.alias, matrix.max_contributions)
            total += self._reply_size(key, max(0, matrix.n_vectors))
        limits.check_reply(total)

    def _reply_size(self, key: tuple[str, int, str, int], n_vectors: int) -> int:
        """Estimated bytes of one answer (``n_vectors`` 0) or one matrix's answers."""
        task, version, alias, top_k = key
        try:
            served, _ = self._served(task, version, alias)
        except LusError:
            return ERROR_REPLY_BYTES
        card = served.card
        names = feature_names(card.schema_id, card.n_features)
        explained = served.explainer is not None
        contributions = min(max(0, top_k), card.n_features) if explained else 0
        longest = max(map(len, names), default=0)
        if n_vectors == 0:
            return answer_bytes(
                task=card.task,
                classes=card.classes,
                notice=card.notice,
                note=served.no_summary_note,
                contributions=contributions,
                longest_feature=longest,
            )
        return matrix_bytes(
            n_vectors=n_vectors,
            task=card.task,
            classes=card.classes,
            notice=card.notice,
            note=served.no_summary_note,
            contributions=contributions,
            longest_feature=longest,
        )

    def predict_matrix(self, query: MatrixQuery) -> MatrixPrediction:
        """Answer many vectors for one expert at once (one model run, arrays out).

        Raises:
            NotFound, SchemaMismatch, FailedPrecondition, InvalidInput, NotReady: As
                ``predict``; one bad vector fails the whole matrix, and the message names it.
        """
        served, label = self._served(query.task, query.version, query.alias)
        rows = check_matrix(served.card, query.schema_id, query.values, query.n_vectors)
        model = served.gate.check(query.biomarker_model)
        return answer_matrix(served, label, rows, query.max_contributions, model)

    def predict_matrices(self, queries: Sequence[MatrixQuery]) -> list[MatrixPrediction | LusError]:
        """``predict_matrix`` for each query; a failing matrix gives its error, in order."""
        results: list[MatrixPrediction | LusError] = []
        for query in queries:
            try:
                results.append(self.predict_matrix(query))
            except LusError as err:
                results.append(err)
        return results

    def list_tasks(self) -> list[TaskInfo]:
        """The default version's card of every task, sorted by task."""
        state = self.registry.state()
        return [
            TaskInfo(
                card=self.registry.card(task),
                versions=ts.versions,
                aliases=dict(ts.aliases),
                owner=ts.owner,
            )
            for task, ts in sorted(state.tasks.items())
        ]

    def task_card(self, task: str, version: int = 0) -> TaskInfo:
        """The card of ``task`` v``version`` (0 = default), with every version's card."""
        state = self.registry.task_state(check_task(task))
        card = self.registry.card(task, version)
        history = tuple(self.registry.card(task, v) for v in state.versions)
        return TaskInfo(card, state.versions, dict(state.aliases), state.owner, history)

    def warm_up(self) -> list[tuple[str, int]]:
        """Build the routes and load every task's default version (up to ``max_loaded``)."""
        self.refresh(preload_all=True)
        with self._lock:
            return sorted(self._loaded)

    def refresh(self, *, preload_all: bool = False) -> bool:
        """Re-read the registry if it changed; load new route targets, then swap the routes.

        Args:
            preload_all: Load every task's targets (start-up), not only tasks in use.

        Returns:
            Whether the registry had changed.

        Raises:
            NotReady: The registry is unreachable (routes and loaded experts stay as they were).
        """
        with self._refresh_lock:
            # Until one refresh has succeeded (e.g. Redis was down at start) every refresh is
            # the start-up one, loading every task.
            preload_all = preload_all or self._revision < 0
            if not preload_all and self.registry.revision() == self._revision:
                return False
            state = self.registry.state()
            routes: dict[tuple[str, str], tuple[int, str]] = {}
            for task, ts in state.tasks.items():
                default = ts.live_version()
                if default is not None:
                    label = PRODUCTION if PRODUCTION in ts.aliases else ""
                    routes[(task, PRODUCTION)] = (default, label)
                if STAGING in ts.aliases:
                    routes[(task, STAGING)] = (ts.aliases[STAGING], STAGING)
            with self._lock:
                gone = [
                    (task, v)
                    for task, v in self._loaded
                    if task not in state.tasks or v not in state.tasks[task].versions
                ]
                for stale in gone:
                    del self._loaded[stale]  # deleted versions stop answering
                in_use = {task for task, _ in self._loaded}
            old = self._routes
            for key, (version, _) in routes.items():
                task = key[0]
                if (task, version) in self._loaded or not (preload_all or task in in_use):
                    continue
                if task not in in_use and len(self._loaded) >= self.max_loaded:
                    continue
                try:
                    self._load(task, version)
                except LusError as err:
                    logger.error("expert %s v%d not loaded: %s", task, version, err)
                    if key in old:
                        routes[key] = old[key]  # keep serving what worked
            self._routes = routes
            self._revision = state.revision
            return True

    def routed_versions(self, task: str) -> frozenset[int]:
        """Versions of ``task`` an alias (or the default route) points to now."""
        routes = self._routes  # replaced whole, never mutated: no lock needed
        return frozenset(v for (t, _), (v, _) in routes.items() if t == task)

    @property
    def synced(self) -> bool:
        """Whether the routes have been built from the registry at least once."""
        return self._revision >= 0

    def loaded(self) -> list[tuple[str, int]]:
        """``(task, version)`` of every loaded expert, least recently used first."""
        with self._lock:
            return list(self._loaded)

    def _with_vector(self, query: PredictQuery, served: Served) -> PredictQuery:
        """The query with its vector: as sent, or the stored vector of a biomarker model the
        expert answers for (never merely the newest stored: that may be another model's)."""
        if not query.video_hash:
            asked = query.biomarker_model_version
            if asked and asked != query.biomarker_model:
                raise InvalidInput(
                    "the request's biomarker_model_version differs from its vector's model "
                    "(vector.model.version); with a vector, name its model in the vector only"
                )
            return query
        if self.feature_store is None:
            raise InvalidInput("this server has no feature store; send the vector instead")
        gate = served.gate
        if query.biomarker_model_version:
            gate.check(query.biomarker_model_version)  # refuses another model's vector
            candidates: tuple[str, ...] = (query.biomarker_model_version,)
        else:
            candidates = gate.stored_models
        if not candidates:
            raise FailedPrecondition(
                f"{gate.expert} was fit on annotated findings ({gate.describe()}), which the "
                "feature store does not hold; send the findings as a vector"
            )
        for model in candidates:
            if query.reader is None:
                stored = self.feature_store.get(query.video_hash, model)
            else:  # the same None for another caller's vector as for none at all
                stored = owned_vector(self.feature_store, query.video_hash, model, query.reader)
            if stored is not None:
                return replace(
                    query, schema_id=stored.schema_id, values=stored.vector, biomarker_model=model
                )
        raise NotFound(
            f"no vector stored for video hash {query.video_hash[:16]}... by biomarker model "
            f"{' or '.join(candidates)} ({gate.expert} answers {gate.describe()}); analyse the "
            "video with that model first, or send a vector it made"
        )

    def _served(self, task: str, version: int, alias: str) -> tuple[Served, str]:
        if version == 0:
            route = self._routes.get((task, alias or PRODUCTION))
            if route is not None:
                served = self._loaded.get((task, route[0]))
                if served is not None:
                    self._touch((task, route[0]))
                    return served, route[1]
            # Off the hot path (a routed task is valid): checked before any message repeats it.
            check_task(task)
            state = self.registry.task_state(task)  # NotFound lists the known tasks
            number = resolve_alias(task, state, alias)
            wanted = alias or PRODUCTION
            label = wanted if wanted in state.aliases else ""
            return self._cached_or_load(task, number), label
        if version < 0:
            raise InvalidInput(f"version must be 0 (default) or a version number, got {version}")
        return self._cached_or_load(task, version), ""

    def _cached_or_load(self, task: str, version: int) -> Served:
        served = self._loaded.get((task, version))
        if served is not None:
            self._touch((task, version))
            return served
        return self._load(check_task(task), version)

    def _touch(self, key: tuple[str, int]) -> None:
        # No lock on the hot path: each OrderedDict operation is atomic under the GIL, and an
        # entry dropped by another thread in between only makes this a no-op.
        with contextlib.suppress(KeyError):
            self._loaded.move_to_end(key)

    def _load(self, task: str, version: int) -> Served:
        """Load ``task`` v``version`` once: concurrent callers wait for the one load."""
        key = (task, version)
        with self._lock:
            flight = self._loading.setdefault(key, threading.Lock())
        try:
            with flight:
                served = self._loaded.get(key)
                if served is not None:
                    return served  # loaded by the call this one waited for
                return self._load_now(task, version)
        finally:
            with self._lock:
                self._loading.pop(key, None)

    def _load_now(self, task: str, version: int) -> Served:
        try:
            card, onnx_bytes = self.registry.get(task, version)
        except NotReady as err:
            raise NotReady(f"expert {task} is not loaded and {err}") from err
        try:
            expert = OnnxExpert(onnx_bytes, n_features=card.n_features, classes=card.classes)
        except InvalidInput as err:
            # Stored bytes passed this check at registration; failing now is not the caller's fault.
            raise CorruptArtifact(f"expert {task} v{card.version} cannot be loaded") from err
        summary = card.training_summary
        explainer = None
        if summary is not None:
            explainer = Explainer(summary, feature_names(card.schema_id, card.n_features))
        note = "" if summary else NO_SUMMARY_NOTE.format(task=card.task, version=card.version)
        served = Served(card, expert, explainer, note, ModelGate(card), len(onnx_bytes))
        if card.lineage is None:
            logger.warning("expert %s v%d has no lineage: it answers no vector", task, version)
        logger.info("loaded expert %s v%d", card.task, card.version)
        with self._lock:
            self.loads += 1
            self._loaded[(card.task, card.version)] = served
            total = sum(s.size_bytes for s in self._loaded.values())
            while len(self._loaded) > 1 and (
                len(self._loaded) > self.max_loaded or total > self.max_loaded_bytes
            ):
                _, dropped = self._loaded.popitem(last=False)
                total -= dropped.size_bytes
        return served
