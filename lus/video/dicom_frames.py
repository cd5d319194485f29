"""DICOM cine loops to model clips, decompressing only the frames the clips need.

Every frame of encapsulated (compressed) pixel data is a separate codestream, so the sampled
frames can be decoded alone and in parallel; the rest are only counted (to refuse a file whose
Number of Frames is wrong, as :func:`~lus.video.dicom.decode_dicom` does). Uncompressed frames
are sliced from the pixel data without converting the others. Each decoded frame is reduced at
once to 8-bit gray, then cropped and resized by a :class:`~lus.video.sampled.ClipBuilder`; the
gray conversion, windowing and inversion are those of ``decode_dicom``, frame by frame, so the
clips equal ``make_clips(decode_dicom(...))`` exactly, except for JPEG 2000: its frames are
decoded at the smallest wavelet resolution that still gives the model its input size
(:mod:`lus.video.jpeg2000`), and those reduced frames are the video the clips are made from.
"""

from __future__ import annotations

import contextvars
import io
import logging
import math
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.pixels.decoders.base import Decoder, DecodeRunner
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from lus import logscrub
from lus.errors import InvalidInput
from lus.video.dicom import (
    PARSE_ERRORS,
    SEND_HINT,
    apply_window,
    check_geometry,
    decode_error,
    frame_to_gray,
    percentile_window,
    percentile_window_frames,
    pixel_decoder,
    read_dataset,
    transfer_syntax,
    voi_window,
)
from lus.video.dicom_meta import frames_per_second, ultrasound_regions
from lus.video.jpeg2000 import JPEG2000_SYNTAXES, NotReducible, Reduction, plan_reduction
from lus.video.limits import DecodeBudget, DecodeLimits, MemoryEstimate, reserve
from lus.video.preprocess import InputSpec
from lus.video.region import box_from_regions
from lus.video.sampled import Built, ClipBuilder, ClipRequest, FramePlan, HashMode, SampledVideo
from lus.video.types import CropBox, Region

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.5": "pylibjpeg",  # RLE Lossless: pylibjpeg-rle
}
"""Decoding plugins to try first. pydicom's default for JPEG-LS is pylibjpeg-libjpeg, about 6x
slower than CharLS (pyjpegls) on a 1080x1080 RGB frame; for RLE its own numpy decoder, about 14x
slower than pylibjpeg-rle (8 frames of 1080x1080 RGB: 0.43 s against 0.03 s,
``benchmarks/decode_throughput.py --threads-check``). All of them hold the GIL, so threads do
not make up for it. JPEG-LS reconstruction is fully specified (lossless, and near-lossless
within the stated error) and RLE is lossless, so conforming decoders give the same pixels; the
tests check the plugins agree. Lossy JPEG is not listed: libjpeg and libjpeg-turbo (Pillow)
differ in their IDCT and upsampling."""

CONVERSION_BYTES_PER_PIXEL = 24
"""Temporaries of one frame's gray conversion, per pixel: float32 RGB (12) and its luma (4), or
float64 modality values (8), float32 values and scaled copies (4 + 4 + 4), with slack."""

Frame = tuple[np.ndarray, dict[str, str | int]]


def ordered_map(function: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``map(function, items)`` on ``threads`` threads, in order, at most ``2 * threads`` ahead.

    The bound keeps memory flat: finished results wait for the slowest earlier one, so an
    unbounded ``Executor.map`` would hold every decoded frame behind a slow first frame.
    """
    if threads <= 1:
        yield from map(function, items)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dicom-frame")
    pending: deque[Future[R]] = deque()
    # Each task runs in a copy of the caller's context: the request's log budget
    # (lus.logscrub) counts what the library logs and warns on these threads too.
    context = contextvars.copy_context()
    try:
        for item in items:
            pending.append(pool.submit(context.copy().run, function, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _PixelSource:
    """One frame at a time from the pixel data, with ``decode_dicom``'s per-frame results."""

    def __init__(
        self,
        ds: Dataset,
        pixels: PixelData,
        syntax: UID,
        decoder: Decoder,
        count: int,
        *,
        reduction: Reduction | None = None,
    ) -> None:
        self.ds = ds
        self.pixels = pixels
        self.syntax = syntax
        self.decoder = decoder
        self.count = count
        self.reduction = reduction
        """JPEG 2000 frames are decoded at this reduced resolution (None: full size)."""
        # The options pydicom reads from the dataset, for one frame given on its own.
        self._frame_options = as_pixel_options(ds, number_of_frames=1)
        self._frame_options.pop("extended_offsets", None)
        self._extended = as_pixel_options(ds).get("extended_offsets")
        preferred = PREFERRED_PLUGINS.get(str(syntax), "")
        self._plugin = preferred if preferred in decoder.available_plugins else ""

    def check_count(self) -> None:
        """Refuse pixel data holding another number of frames than Number of Frames declares,
        without decoding: decode_dicom refuses such files after decoding every frame."""
        found = self._frames_present()
        if found != self.count:
            raise InvalidInput(
                f"the DICOM file declares {self.count} frames but {found} could be decoded; "
                f"the file may be truncated; {SEND_HINT}"
            )

    def _frames_present(self) -> int:
        if self.syntax.is_compressed:
            self.pixels.check_items()
            return sum(1 for _ in self._encoded())
        runner = DecodeRunner(self.syntax)
        runner.set_source(self.ds)
        length = float(runner.frame_length(unit="bytes"))
        expected = math.ceil(length * self.count)
        actual = len(self.pixels.native())
        whole = int(actual // length) if length > 0 else 0
        # More bytes than declared (beyond the padding byte): decode_dicom decodes the extra
        # frames (pydicom's allow_excess_frames) and then refuses the count. Fewer bytes:
        # pydicom refuses when the first frame is decoded, with the message decode_dicom gives.
        ybr_422 = str(self.ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422"
        if actual > expected + expected % 2 and whole > self.count and not ybr_422:
            return whole
        return self.count

    def _encoded(self) -> Iterator[tuple[bytes, ...]]:
        return generate_fragmented_frames(
            self.pixels.encapsulated(),
            number_of_frames=self.count,
            extended_offsets=self._extended,
        )

    def encoded_frames(self, wanted: Callable[[int], bool]) -> Iterator[tuple[int, bytes]]:
        """``(index, codestream)`` of the wanted frames, in order (compressed data only)."""
        for index, fragments in enumerate(self._encoded()):
            if wanted(index):
                yield index, b"".join(fragments)

    def first_codestream(self) -> bytes | None:
        """The first frame's codestream (compressed data), or None when it cannot be read."""
        try:
            return next(self.encoded_frames(lambda index: index == 0), (0, b""))[1] or None
        except PARSE_ERRORS:  # the full decode will say what is wrong with the file
            return None

    def decode_encoded(self, encoded: bytes) -> Frame:
        """One codestream decoded exactly as pydicom's ``iter_array`` decodes it in place, or at
        the reduced resolution (raises :class:`NotReducible` when it cannot be)."""
        if self.reduction is not None:
            return self.reduction.decode(encoded)
        if self._plugin:
            try:
                return self._decode_encoded(encoded, self._plugin)
            except PARSE_ERRORS:  # pydicom's own order may still decode it, as decode_dicom
                pass
        return self._decode_encoded(encoded, "")

    def _decode_encoded(self, encoded: bytes, plugin: str) -> Frame:
        array, props = self.decoder.as_array(
            encapsulate([encoded]),
            as_rgb=False,  # type: ignore[arg-type]  # a keyword option, typed as the options dict
            decoding_plugin=plugin,
            **self._frame_options,
        )
        return array, props

    def decode_native(self, index: int) -> Frame:
        array, props = self.decoder.as_array(
            self.ds,
            index=index,
            as_rgb=False,  # type: ignore[arg-type]  # a keyword option, typed as the options dict
        )
        return array, props

    def frames(
        self, indices: Iterable[int], threads: int, convert: Callable[[Frame], R]
    ) -> Iterator[tuple[int, R]]:
        """``(index, convert(decoded frame))`` for ``indices``, ascending, decoded and converted
        on ``threads`` threads (the codecs and numpy release the GIL for most of the work)."""
        wanted = sorted(set(indices))
        if self.syntax.is_compressed:
            stream = self.encoded_frames(frozenset(wanted).__contains__)

            def from_codestream(item: tuple[int, bytes]) -> tuple[int, R]:
                return item[0], convert(self.decode_encoded(item[1]))

            yield from ordered_map(from_codestream, stream, threads)
        else:

            def from_native(index: int) -> tuple[int, R]:
                return index, convert(self.decode_native(index))

            yield from ordered_map(from_native, wanted, threads)


class _GrayConverter:
    """decode_dicom's gray conversion of a stack, applied to one frame at a time.

    decode_dicom converts each frame with ``frame_to_gray``, windows the stack when that gives
    more than 8 bits (the file's VOI window, else percentiles of every ``count // 16``-th frame)
    and inverts MONOCHROME1; the window does not depend on the frame, so it is fixed first.
    """

    def __init__(self, ds: Dataset, first: Frame) -> None:
        self.ds = ds
        props = first[1]
        gray = frame_to_gray(first[0], props, ds)
        self.windowed = gray.dtype != np.uint8
        self.invert = str(props.get("photometric_interpretation", "")) == "MONOCHROME1"
        self.window: tuple[float, float] | None = voi_window(ds) if self.windowed else None

    @property
    def needs_percentiles(self) -> bool:
        return self.windowed and self.window is None

    def set_percentiles(self, frames: list[np.ndarray]) -> None:
        """The window from the modality values of :func:`percentile_window_frames`, in order."""
        values = np.empty((len(frames), *frames[0].shape), dtype=np.float32)
        for k, frame in enumerate(frames):
            values[k] = apply_modality_lut(frame, self.ds)
        self.window = percentile_window(values)

    def raw_gray(self, frame: Frame) -> np.ndarray:
        return frame_to_gray(frame[0], frame[1], self.ds)

    def __call__(self, frame: Frame) -> np.ndarray:
        gray = self.raw_gray(frame)
        if self.windowed:
            assert self.window is not None
            values = apply_modality_lut(gray, self.ds).astype(np.float32)
            gray = apply_window(values, *self.window)
        if self.invert:
            gray = 255 - gray
        result: np.ndarray = gray
        return result


PIXEL_DATA_TAG = 0x7FE00010
ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class PixelData:
    """Where the Pixel Data value is: in the upload itself, or in a dataset pydicom read.

    Attributes:
        source: The bytes holding the value (the upload, or pydicom's copy of the value).
        start: Offset of the value in ``source``: the first pixel (uncompressed), or the Basic
            Offset Table item (encapsulated).
        length: Bytes of an uncompressed value; ``None`` for encapsulated data (its items end
            with a sequence delimiter).
        vr: The element's value representation (OB or OW).
        in_upload: ``source`` is the upload, where encapsulated items must end with a
            sequence delimiter (pydicom's copy of a value stops before it).
    """

    source: bytes
    start: int
    length: int | None
    vr: str = "OB"
    in_upload: bool = True

    def check_items(self) -> None:
        """Refuse encapsulated data cut short: pydicom's fragment reader stops quietly at the
        end of the data, and returns a short last fragment as it is."""
        data, position = self.source, self.start
        while position + 8 <= len(data):
            group, element, length = struct.unpack_from("<HHI", data, position)
            tag = group << 16 | element
            if tag == SEQUENCE_DELIMITER:
                return
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise InvalidInput(
                    f"the DICOM pixel data holds an unexpected element among its fragments; "
                    f"the file may be corrupt; {SEND_HINT}"
                )
            position += 8 + length
        if position > len(data) or self.in_upload:
            raise InvalidInput(
                f"the DICOM pixel data ends inside its fragments; the file may be truncated; "
                f"{SEND_HINT}"
            )

    def native(self) -> memoryview:
        assert self.length is not None
        return memoryview(self.source)[self.start : self.start + self.length]

    def encapsulated(self) -> io.BytesIO:
        """A fresh reader at the Basic Offset Table (``BytesIO`` shares the bytes, no copy)."""
        stream = io.BytesIO(self.source)
        stream.seek(self.start)
        return stream


def read_sharing_pixels(data: bytes) -> tuple[Dataset, PixelData | None]:
    """The dataset up to its Pixel Data, and where that value is in ``data`` (no copy).

    ``pydicom.dcmread`` copies the pixel data: the size of the file again (0.35 GB for 100 RGB
    frames of 1080x1080 uncompressed, 0.15 GB as JPEG-LS), only to slice frames from it. The
    header is read up to the pixel data and the value then stays in the upload: an uncompressed
    one is set on the dataset as a memoryview (pydicom slices frames from it), an encapsulated
    one is read through a ``BytesIO`` over the upload. Anything unusual (implicit VR with
    undefined length, another VR, no file position) is read by pydicom as before.

    Returns:
        The dataset, and the pixel data (``None`` when the file has none).
    """
    stream = io.BytesIO(data)
    ds: Dataset
    try:
        ds = pydicom.dcmread(stream, force=True, stop_before_pixels=True)
        pixels = _locate_pixel_data(data, stream.tell(), ds)
    except PARSE_ERRORS:
        pixels = None
    if pixels is None:  # pydicom reads everything, copying the value
        ds = read_dataset(data)
        if "PixelData" not in ds:
            return ds, None
        try:  # pydicom reads the value lazily: an unknown VR or an empty value raises here
            value = ds.PixelData
            length = None if ds["PixelData"].is_undefined_length else len(value)
        except PARSE_ERRORS as err:  # the message may quote file content: name the type only
            raise InvalidInput(
                f"could not read the DICOM pixel data ({type(err).__name__}); {SEND_HINT}"
            ) from err
        return ds, PixelData(source=value, start=0, length=length, in_upload=False)
    if pixels.length is not None:
        # pydicom's value check knows bytes only; a memoryview is what its decoders slice anyway.
        ds[PIXEL_DATA_TAG] = DataElement(
            PIXEL_DATA_TAG, pixels.vr, pixels.native(), validation_mode=pydicom.config.IGNORE
        )
    return ds, pixels


def _locate_pixel_data(data: bytes, start: int, ds: Dataset) -> PixelData | None:
    """The Pixel Data element at ``start`` (where ``stop_before_pixels`` stopped), if usable."""
    implicit, little = ds.original_encoding
    if implicit is None or little is None or start + 12 > len(data):
        return None
    endian = "<" if little else ">"
    group, element = struct.unpack_from(f"{endian}HH", data, start)
    if (group, element) != (0x7FE0, 0x0010):
        return None
    if implicit:
        (length,) = struct.unpack_from(f"{endian}I", data, start + 4)
        value_start = start + 8
        vr = "OW" if int(ds.get("BitsAllocated") or 8) > 8 else "OB"  # as pydicom infers it
    else:
        vr = data[start + 4 : start + 6].decode("latin-1")
        if vr not in ("OB", "OW"):
            return None
        (length,) = struct.unpack_from(f"{endian}I", data, start + 8)
        value_start = start + 12
    if length == UNDEFINED_LENGTH:
        if implicit or not little:  # encapsulated data is always explicit VR little endian
            return None
        return PixelData(source=data, start=value_start, length=None, vr=vr)
    # A truncated file gives a shorter value; pydicom refuses it when decoding, as before.
    available = min(length, len(data) - value_start)
    return PixelData(source=data, start=value_start, length=available, vr=vr)


def _keep(frame: Frame) -> Frame:
    return frame


def _pixel_layout(ds: Dataset) -> tuple[int, int, bool]:
    """Samples per pixel, bytes per sample and whether values may need windowing."""
    try:
        samples = max(1, int(ds.get("SamplesPerPixel") or 1))
        allocated = max(1, math.ceil(int(ds.get("BitsAllocated") or 8) / 8))
        signed = int(ds.get("PixelRepresentation") or 0) == 1
    except PARSE_ERRORS as err:
        raise InvalidInput(f"the DICOM image attributes are invalid; {SEND_HINT}") from err
    return samples, allocated, samples == 1 and (allocated > 1 or signed)


def estimate(
    ds: Dataset, plan: FramePlan, size: int, *, stored_pixels: int | None = None
) -> MemoryEstimate:
    """Decoded bytes :func:`decode_dicom_clips` holds for ``plan``, from the header alone.

    ``stored_pixels``: pixels of a frame as stored, when the plan is for frames decoded smaller
    (JPEG 2000 at a reduced resolution); the codec's buffers are counted at that size, to be
    safe, and the frames kept at the plan's.
    """
    samples, allocated, may_window = _pixel_layout(ds)
    pixels = plan.height * plan.width
    codec_pixels = max(pixels, stored_pixels or 0)
    window = 0
    if may_window and voi_window(ds) is None:  # raw frames, their float32 values, a sort copy
        frames = len(percentile_window_frames(plan.num_frames))
        window = frames * pixels * (allocated + 8) + pixels * CONVERSION_BYTES_PER_PIXEL
    # Each thread: the decoded frame and its conversion; plus two finished gray frames per
    # thread waiting in order (ordered_map's look-ahead).
    per_thread = codec_pixels * samples * allocated + pixels * (CONVERSION_BYTES_PER_PIXEL + 2)
    return MemoryEstimate(fixed=plan.held_bytes(size) + window, per_thread=per_thread)


def decode_dicom_clips(
    data: bytes,
    spec: InputSpec,
    limits: DecodeLimits,
    *,
    budget: DecodeBudget | None = None,
    hash_mode: HashMode = "sampled",
    keep_analysis: bool = False,
) -> SampledVideo:
    """Clips for the model from a DICOM file; see :func:`lus.video.decode_clips`.

    Raises:
        InvalidInput: as ``decode_dicom``, and for a file beyond ``limits``.
        Overloaded: ``budget`` has too little free right now.
    """
    with logscrub.log_budget():  # one upload's library complaints: bounded, scrubbed
        return _decode_dicom_clips(
            data, spec, limits, budget=budget, hash_mode=hash_mode, keep_analysis=keep_analysis
        )


def _decode_dicom_clips(
    data: bytes,
    spec: InputSpec,
    limits: DecodeLimits,
    *,
    budget: DecodeBudget | None,
    hash_mode: HashMode,
    keep_analysis: bool,
) -> SampledVideo:
    ds, pixels = read_sharing_pixels(data)
    count = check_geometry(
        ds,
        max_frames=limits.max_frames,
        max_pixels=limits.max_frame_pixels,
        has_pixel_data=pixels is not None,
    )
    assert pixels is not None
    try:  # header elements are parsed lazily, so a corrupt one surfaces here
        rows, columns = int(ds.Rows), int(ds.Columns)
        uid = ds.get("SOPInstanceUID")
        sop_instance_uid = str(uid) if uid else None
        fps = frames_per_second(ds)
        regions = ultrasound_regions(ds)
    except PARSE_ERRORS as err:  # the message may quote file content: name the type only
        raise InvalidInput(
            f"could not read the DICOM header ({type(err).__name__}); {SEND_HINT}"
        ) from err
    limits.check_geometry(count, rows, columns, what="the DICOM file")
    syntax = transfer_syntax(ds)
    decoder = pixel_decoder(syntax)
    file = _File(ds, pixels, syntax, decoder, count, rows, columns, regions)
    request = ClipRequest(spec, limits, budget, hash_mode, keep_analysis)
    reduction = None
    if limits.reduce_jpeg2000 and hash_mode != "all" and str(syntax) in JPEG2000_SYNTAXES:
        reduction = _reduction(file, spec)
    try:
        decoded = _decode(file, request, reduction)
    except NotReducible as err:  # e.g. one frame coded otherwise than the first: full size
        log.info("JPEG 2000 frames cannot all be decoded reduced (%s); decoding at full size", err)
        reduction = None
        decoded = _decode(file, request, None)
    built = decoded.built
    return SampledVideo(
        clips=built.clips,
        num_frames=count,
        height=rows,
        width=columns,
        fps=fps,
        pixel_hash=built.digest,
        hash_mode=hash_mode,
        indices=decoded.plan.indices,
        crop=built.box,
        sop_instance_uid=sop_instance_uid,
        regions=regions,
        decoded_frames=decoded.frames,
        reserved_bytes=decoded.reserved_bytes,
        threads=decoded.threads,
        analysis_frames=built.analysis,
        reduction=reduction.level if reduction else 0,
    )


@dataclass(frozen=True)
class _File:
    """The parsed DICOM file: what every decoding attempt starts from."""

    ds: Dataset
    pixels: PixelData
    syntax: UID
    decoder: Decoder
    count: int
    rows: int
    columns: int
    regions: tuple[Region, ...]


def _reduction(file: _File, spec: InputSpec) -> Reduction | None:
    """The JPEG 2000 reduction for ``file`` (None: decode at full size).

    The side that gets resized to ``spec.size`` must keep at least that many pixels: the whole
    frame, or with ``crop="auto"`` the DICOM region's box; when the box must be found in the
    pixels (no usable region), one level is kept in hand, as the heuristic's box may be as
    small as half the frame's side.
    """
    side = min(file.rows, file.columns)
    if spec.crop == "auto":
        box = box_from_regions(file.regions, file.rows, file.columns)
        side = min(box.height, box.width) if box is not None else side // 2
    most = 0
    while side >> (most + 1) >= spec.size:
        most += 1
    if most == 0:
        return None
    codestream = _PixelSource(file.ds, file.pixels, file.syntax, file.decoder, file.count)
    first = codestream.first_codestream()
    if first is None:
        return None
    return plan_reduction(file.ds, first, file.rows, file.columns, spec.size, max_level=most)


def _scaled(regions: tuple[Region, ...], factor: int) -> tuple[Region, ...]:
    """Regions in the coordinates of frames decoded ``factor`` times smaller (rounded outward)."""
    if factor == 1:
        return regions
    return tuple(
        Region(
            box=CropBox(
                x0=r.box.x0 // factor,
                y0=r.box.y0 // factor,
                x1=-(-r.box.x1 // factor),
                y1=-(-r.box.y1 // factor),
            ),
            spatial_format=r.spatial_format,
            data_type=r.data_type,
        )
        for r in regions
    )


@dataclass(frozen=True)
class _Decoded:
    """One decode's result: the clips built, the plan, the frames decoded, bytes and threads."""

    built: Built
    plan: FramePlan
    frames: int
    reserved_bytes: int
    threads: int


def _decode(file: _File, request: ClipRequest, reduction: Reduction | None) -> _Decoded:
    """One decode of the file's wanted frames, at full size or at ``reduction``.

    Raises:
        NotReducible: a frame could not be decoded at ``reduction``.
    """
    spec, limits = request.spec, request.limits
    ds, count = file.ds, file.count
    height, width = (reduction.height, reduction.width) if reduction else (file.rows, file.columns)
    regions = _scaled(file.regions, reduction.factor if reduction else 1)
    plan = request.plan(count, height, width, regions)
    what = f"the DICOM file ({count} frames of {file.columns}x{file.rows})"
    needed = estimate(ds, plan, spec.size, stored_pixels=file.rows * file.columns)
    reservation, threads = reserve(needed, limits, request.budget, what=what)
    with reservation:
        builder = ClipBuilder(plan, spec.size, request.hash_mode, max_bytes=reservation.nbytes)
        try:
            source = _PixelSource(
                ds, file.pixels, file.syntax, file.decoder, count, reduction=reduction
            )
            source.check_count()
            wanted = [i for i in range(count) if builder.wants(i)]
            # The first frame alone, on this thread: it says whether values need a window,
            # and reading the dataset's elements once here leaves the threads only reads.
            first_index, first = next(source.frames(wanted[:1], 1, _keep))
            convert = _GrayConverter(ds, first)
            if convert.needs_percentiles:
                picked = percentile_window_frames(count)
                window_frames = source.frames(picked, threads, convert.raw_gray)
                convert.set_percentiles([frame for _, frame in window_frames])
            builder.add(first_index, convert(first))
            del first
            for index, gray in source.frames(wanted[1:], threads, convert):
                builder.add(index, gray)
            built = builder.finish(keep_analysis=request.keep_analysis)
        except (InvalidInput, NotReducible):
            raise
        except (*PARSE_ERRORS, MemoryError) as err:
            raise decode_error(file.syntax, err) from err
    return _Decoded(built, plan, builder.seen, reservation.nbytes, threads)


__all__ = ["decode_dicom_clips", "estimate", "ordered_map"]
