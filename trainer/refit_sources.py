"""Where a refit gets each stored example's vector from the next model: the biomarker tier.

``BiomarkerVectorSource`` asks the tier's feature store first (``Lookup`` with the stored pixel
hash or file sha256 and ``model_version``), then, when the video's file is in the refit's video
manifest (``VideoIndex``), uploads it to be extracted by that model. Nothing is guessed: an
example whose video is neither stored for the model nor found in the manifest is reported
missing, with the reason.

The video manifest is a CSV with a ``video`` column: the path of each file, relative to the
CSV's folder (or absolute), as a trainer manifest (``lus synth``'s ``manifest.csv``) writes it.
Its files are matched to stored examples three ways: by the sha256 of their bytes (computed
here), by the sha256 of the ``video`` value as written (what ``lus train expert`` kept of the
vectors CSV's ``video`` column, which ``lus extract`` copies from the same manifest), and by
pixel hash (an optional ``pixel_hash`` column, else decoded here, only for examples known by
pixel hash alone, as TrainExpert keeps them, and only until all of those are found).

A decoded file gets every pixel hash the tier has answered with: the ``"sampled-v1"`` hash
under the input spec of each model the tier serves (``served_specs``), and the ``"all-frames"``
hash of every frame that training sets made before issue 12 hold.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc
from tqdm import tqdm

from expert_service.training_set import file_name_sha256
from lus.biomarker.v1 import biomarker_service_pb2 as pb
from lus.errors import InvalidInput
from trainer.refit import ExampleRef, SourcedVector, VectorUnavailable

if TYPE_CHECKING:
    from lus.video import InputSpec

logger = logging.getLogger(__name__)

VIDEO_COLUMN = "video"
PIXEL_HASH_COLUMN = "pixel_hash"
EXTRACT_REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT,)
"""Extract statuses that concern one video (not decodable, not an adequate cine loop): that
example is missing; any other failure stops the refit."""


class BiomarkerTier(Protocol):
    """What the source needs of ``lus.clients.biomarker.BiomarkerClient``."""

    def lookup(
        self, *, pixel_hash: str = "", content_sha256: str = "", model_version: str = ""
    ) -> pb.ExtractResponse | None: ...

    def extract_bytes(self, data: bytes, *, model_version: str = "") -> pb.ExtractResponse: ...


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


PixelHasher = Callable[[Path], str | Sequence[str]]
"""A file's pixel hash(es); raises ``InvalidInput`` (or ``OSError``) for a file it cannot read."""


class ServingTier(Protocol):
    """What ``served_specs`` needs of ``lus.clients.biomarker.BiomarkerClient``."""

    def model_info(self, model_version: str = "") -> pb.ModelInfo: ...


def served_specs(tier: ServingTier) -> tuple[InputSpec, ...]:
    """The distinct input specs of every model version ``tier`` serves, the current one first:
    the specs the pixel hashes of its answers were made with."""
    from lus.clients.biomarker import spec_from_proto

    current = tier.model_info()
    specs = [spec_from_proto(current.input)]
    for version in current.served_versions:
        if version != current.model.model_version:
            specs.append(spec_from_proto(tier.model_info(version).input))
    return tuple(dict.fromkeys(specs))


def file_pixel_hasher(specs: Sequence[InputSpec] = ()) -> PixelHasher:
    """Every pixel hash a file may be known by: ``"sampled-v1"`` under each of ``specs`` (none:
    the default ``InputSpec()``), and the every-frame ``"all-frames"`` hash of older answers."""

    def hashes(path: Path) -> tuple[str, ...]:
        from lus.clients.biomarker import every_frame_pixel_hash, local_pixel_hash
        from lus.video import InputSpec

        data = path.read_bytes()
        sampled = [local_pixel_hash(data, spec) for spec in (specs or (InputSpec(),))]
        return (*sampled, every_frame_pixel_hash(data))

    return hashes


@dataclass
class VideoIndex:
    """The video files a refit may re-extract, by content sha256, file-name sha256 and pixel
    hash.

    Attributes:
        by_content: sha256 of a file's bytes -> the file.
        by_name: sha256 of the manifest's ``video`` value -> the file.
        by_pixel: pixel hash -> the file (from the manifest's column or decoded here).
        absent: Manifest rows whose file does not exist.
    """

    by_content: dict[str, Path] = field(default_factory=dict)
    by_name: dict[str, Path] = field(default_factory=dict)
    by_pixel: dict[str, Path] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)

    @classmethod
    def from_manifest(
        cls,
        manifest: Path,
        wanted: Sequence[ExampleRef] = (),
        *,
        progress: bool = True,
        specs: Sequence[InputSpec] = (),
        pixel_hasher: PixelHasher | None = None,
    ) -> VideoIndex:
        """Hash every file of ``manifest``; decode files to pixel hashes only while examples
        of ``wanted`` known by pixel hash alone are still unmatched.

        ``specs``: the input specs of the tier's models (``served_specs``), for the
        ``"sampled-v1"`` hashes; ``pixel_hasher`` replaces the decoding (tests).

        Raises:
            InvalidInput: No ``video`` column.
        """
        index = cls()
        with manifest.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if VIDEO_COLUMN not in (reader.fieldnames or []):
                raise InvalidInput(
                    f"{manifest.name} has no {VIDEO_COLUMN!r} column (the path of each video, "
                    "relative to the manifest's folder)"
                )
            rows = [
                ((row[VIDEO_COLUMN] or "").strip(), (row.get(PIXEL_HASH_COLUMN) or "").strip())
                for row in reader
            ]
        files: list[Path] = []
        for name, pixel in tqdm(rows, desc="hash videos", unit="file", disable=not progress):
            if not name:
                continue
            path = Path(name) if Path(name).is_absolute() else manifest.parent / name
            if not path.is_file():
                index.absent.append(name)
                continue
            index.by_name.setdefault(file_name_sha256(name), path)
            index.by_content.setdefault(_file_sha256(path), path)
            if pixel:
                index.by_pixel.setdefault(pixel.lower(), path)
            files.append(path)
        hasher = pixel_hasher or file_pixel_hasher(specs)
        index._decode_for(wanted, files, hasher, progress)
        return index

    def _decode_for(
        self,
        wanted: Sequence[ExampleRef],
        files: list[Path],
        hasher: PixelHasher,
        progress: bool,
    ) -> None:
        pending = {ref.pixel_hash for ref in wanted if ref.pixel_hash and self.find(ref) is None}
        if not pending:
            return
        matched = {self.find(ref) for ref in wanted} - {None}
        candidates = [path for path in files if path not in matched]
        bar = tqdm(candidates, desc="pixel hashes", unit="file", disable=not progress)
        for path in bar:
            try:
                found = hasher(path)
            except (InvalidInput, OSError, ImportError) as err:
                logger.info("cannot decode %s here (%s); it matches no pixel hash", path, err)
                continue
            for digest in (found,) if isinstance(found, str) else found:
                self.by_pixel.setdefault(digest, path)
                pending.discard(digest)
            if not pending:
                break
        bar.close()

    def find(self, ref: ExampleRef) -> Path | None:
        """The file of ``ref``'s video, by whichever of its hashes the manifest matches."""
        for table, key in (
            (self.by_content, ref.content_sha256),
            (self.by_pixel, ref.pixel_hash),
            (self.by_name, ref.name_sha256),
        ):
            if key and key in table:
                return table[key]
        return None


class BiomarkerVectorSource:
    """``trainer.refit.VectorSource`` over the biomarker tier.

    Args:
        tier: A ``BiomarkerClient`` (or anything with its ``lookup`` and ``extract_bytes``).
        videos: Files to re-extract when the feature store lacks a vector; None: store only.
    """

    def __init__(self, tier: BiomarkerTier, videos: VideoIndex | None = None) -> None:
        self._tier = tier
        self._videos = videos

    def vector(self, example: ExampleRef, model_version: str) -> SourcedVector:
        """The vector of ``example``'s video by ``model_version``: stored, else re-extracted.

        Raises:
            VectorUnavailable: Not stored for that model, and no file found (or the tier
                refuses the file, e.g. not an adequate cine loop).
            grpc.RpcError: The tier failed otherwise (unreachable, model not served): the
                refit stops.
            lus.errors.FailedPrecondition: The tier answered with another model.
        """
        if example.pixel_hash or example.content_sha256:
            reply = self._tier.lookup(
                pixel_hash=example.pixel_hash,
                content_sha256=example.content_sha256,
                model_version=model_version,
            )
            if reply is not None:
                return _sourced(reply, "feature store", example.content_sha256)
        path = self._videos.find(example) if self._videos is not None else None
        if path is None:
            where = "no file in --videos matches it" if self._videos else "no --videos given"
            raise VectorUnavailable(f"no vector stored for {model_version} and {where}")
        data = path.read_bytes()
        try:
            reply = self._tier.extract_bytes(data, model_version=model_version)
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if code not in EXTRACT_REFUSALS:
                raise
            details = err.details() if isinstance(err, grpc.Call) else ""
            raise VectorUnavailable(
                f"its file was refused by the biomarker tier: {details}"
            ) from None
        via = "feature store" if reply.cached else "re-extracted"
        return _sourced(reply, via, hashlib.sha256(data).hexdigest())


def _sourced(reply: pb.ExtractResponse, via: str, content_sha256: str) -> SourcedVector:
    return SourcedVector(
        values=tuple(reply.vector.values),
        schema_id=reply.vector.schema_id,
        model_version=reply.vector.model.version,
        via=via,
        pixel_hash=reply.pixel_hash,
        content_sha256=content_sha256,  # only what we hashed ourselves, never another upload's
    )
