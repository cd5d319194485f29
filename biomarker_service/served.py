"""The models one server serves: the current one and, during an upgrade, the next one.

An expert answers only vectors of the biomarker model it was fit on, so switching models at
once would silently hand every expert another model's numbers (or refuse them all). During an
upgrade a server therefore serves both: a request naming no ``model_version`` gets the current
model, one naming a served version gets that model, and experts move over one by one as they
are refit on the next model's vectors. Each model has its own model thread and batcher, so a
batch never mixes models; the decode pool and the feature store are shared (the store keys
vectors by served version, and content entries are model-independent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from biomarker_service.batcher import DynamicBatcher
from biomarker_service.extractor import BiomarkerExtractor
from lus.errors import NotFound


@dataclass(frozen=True)
class ServedModel:
    """One served model: the extractor that computes and stores its vectors, and its batcher."""

    extractor: BiomarkerExtractor
    batcher: DynamicBatcher
    role: str
    """"current" or "next": which setting it came from (logs, ``served_versions`` order)."""

    @property
    def version(self) -> str:
        """The served version (``ModelRef.version``) requests name it by."""
        return self.extractor.model.version


class ServedModels:
    """The served models by version, the current one first."""

    def __init__(self, models: Sequence[ServedModel]) -> None:
        if not models:
            raise ValueError("a server serves at least one model")
        self._models = tuple(models)
        self._by_version = {model.version: model for model in self._models}
        if len(self._by_version) != len(self._models):
            raise ValueError(f"served model versions must differ: {self.versions}")

    @property
    def current(self) -> ServedModel:
        """The model that answers requests naming no version."""
        return self._models[0]

    @property
    def versions(self) -> list[str]:
        """Every served version, the current one first (``ModelInfo.served_versions``)."""
        return [model.version for model in self._models]

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def get(self, version: str) -> ServedModel:
        """The model to compute with: "" is the current one.

        Raises:
            NotFound: ``version`` is not served here. Computing it with another model would be
                the silent drift this class exists to prevent; the message lists what is served.
        """
        if not version:
            return self.current
        model = self._by_version.get(version)
        if model is None:
            raise NotFound(
                f"biomarker model version {version} is not served here; served versions:"
                f" {self.describe()}. Leave model_version empty for the current model"
            )
        return model

    def for_lookup(self, version: str) -> ServedModel:
        """The model that answers a store lookup for ``version``.

        A served version is looked up by its own model, which checks that stored vectors come
        from its very artifact file. Any other version (a model served before) is looked up by
        the current model, which returns such vectors labelled with their own version, as a
        single-model server always has.
        """
        return self._by_version.get(version, self.current)

    def describe(self) -> str:
        """e.g. "A (current), B (next)"."""
        return ", ".join(f"{model.version} ({model.role})" for model in self._models)

    async def close(self) -> None:
        """Stop every batcher, then wait for each model thread's forward pass and release it.

        The threads are waited for off the loop, so that a process serving more than this tier
        (``lus serve``) keeps answering meanwhile.
        """
        for model in self._models:
            await model.batcher.close()
        for model in self._models:
            await asyncio.to_thread(model.extractor.runner.close)
