"""Read DICOM cine loops and images (pydicom) into 8-bit grayscale frames, timing and regions.

Handles Ultrasound (Multi-frame) Image Storage and any other single- or multi-frame image object,
in the transfer syntaxes pydicom and the installed plugins decode (uncompressed little endian,
JPEG baseline/extended/lossless, JPEG-LS, RLE, JPEG 2000). Only pixel, timing and region
attributes are read: patient and study attributes are never touched, logged or kept.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels.decoders.base import Decoder, get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from lus import logscrub
from lus.clients.sniff import looks_like_dicom
from lus.errors import InvalidInput
from lus.video.dicom_meta import frames_per_second, ultrasound_regions
from lus.video.types import DecodedVideo

# looks_like_dicom is re-exported: the decoder picks this reader by content, with the same test
# the client uses to label an upload as DICOM.
__all__ = [
    "PARSE_ERRORS",
    "SEND_HINT",
    "apply_window",
    "check_geometry",
    "decode_dicom",
    "decode_error",
    "first_line",
    "frame_to_gray",
    "looks_like_dicom",
    "percentile_window",
    "percentile_window_frames",
    "pixel_decoder",
    "read_dataset",
    "syntax_label",
    "transfer_syntax",
    "voi_window",
]

SEND_HINT = (
    "send an ultrasound cine loop or image (uncompressed, JPEG, JPEG-LS, RLE or JPEG 2000) "
    "or an MP4/AVI video"
)

PARSE_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    EOFError,
    OSError,  # pydicom: "No tag to read at file position ..." on a truncated element
    OverflowError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    zlib.error,  # Deflated Explicit VR Little Endian cut short or corrupt
    Warning,
)
"""What pydicom raises on malformed input (it has no single error type for it); warnings count
when the process turns them into errors (``-W error``)."""

# pydicom quotes the values it complains about, in log records of "pydicom" and its children
# and in warnings; a corrupt length can make such a value swallow the patient's name and id.
logscrub.install()


def read_dataset(data: bytes) -> Dataset:
    """The whole dataset (``force``: a file without preamble is read too).

    Raises:
        InvalidInput: pydicom cannot read it; the message names the error type only.
    """
    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except PARSE_ERRORS as err:  # the message may quote file content: name the type only
        raise InvalidInput(
            f"could not parse the DICOM file ({type(err).__name__}); {SEND_HINT}"
        ) from err


def transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax, inferred from the encoding for a bare dataset without file meta."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid:
        return UID(str(uid))
    implicit, little = ds.original_encoding
    if implicit and little:
        syntax = ImplicitVRLittleEndian
    else:
        syntax = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    return syntax


def check_geometry(
    ds: Dataset, *, max_frames: int, max_pixels: int, has_pixel_data: bool | None = None
) -> int:
    """Number of frames, after checking the image attributes a decoder needs.

    ``has_pixel_data``: whether the file holds Pixel Data, when the caller read the header
    without it (``None``: look in ``ds``).
    """
    if not (("PixelData" in ds) if has_pixel_data is None else has_pixel_data):
        raise InvalidInput(
            "the DICOM file holds no pixel data (7FE0,0010): it is truncated, or not an image "
            f"(e.g. a report or a presentation state); {SEND_HINT}"
        )
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        declared = ds.get("NumberOfFrames")
        count = 1 if declared is None or str(declared).strip() == "" else int(declared)
    except PARSE_ERRORS as err:
        raise InvalidInput(
            f"the DICOM file lacks valid Rows/Columns/Number of Frames; {SEND_HINT}"
        ) from err
    if rows < 1 or columns < 1 or count < 1:
        raise InvalidInput(
            f"the DICOM image is empty ({count} frames of {columns}x{rows}); {SEND_HINT}"
        )
    if rows * columns > max_pixels:
        raise InvalidInput(f"frames of {columns}x{rows} exceed the limit of {max_pixels} pixels")
    if count > max_frames:
        raise InvalidInput(f"the DICOM file has {count} frames, more than {max_frames}; send less")
    return count


def syntax_label(syntax: UID) -> str:
    """The transfer syntax for a message: its name and UID when the UID is well formed, else
    nothing of it (a corrupt length can make the value run on into the patient's name)."""
    if len(syntax) <= 64 and syntax.is_valid:
        return f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else str(syntax)
    return "(a malformed UID)"


def pixel_decoder(syntax: UID) -> Decoder:
    """pydicom's decoder for ``syntax``, refused when unsupported or not installed."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise InvalidInput(
            f"DICOM transfer syntax {syntax_label(syntax)} is not supported; {SEND_HINT}"
        ) from err
    if not decoder.is_available:
        raise InvalidInput(
            f"no decoder for DICOM transfer syntax {syntax_label(syntax)} is installed "
            f"here; {SEND_HINT}"
        )
    return decoder


def _raw_frames(ds: Dataset, syntax: UID) -> Iterator[tuple[np.ndarray, dict[str, str | int]]]:
    """Decoded frames with the properties of what was decoded.

    No colour conversion is asked for: the properties say whether a frame holds YCbCr (a JPEG
    codec may have converted it to RGB already) and the luma is then the Y channel as stored.
    """
    decoder = pixel_decoder(syntax)
    if syntax.is_compressed:
        yield from decoder.iter_array(ds, as_rgb=False)
        return
    # Native data is in memory already; pydicom 3.0's per-frame iteration also misplaces
    # frames of multi-frame YBR_FULL_422, which decoding the whole array gets right.
    array, props = decoder.as_array(ds, as_rgb=False)  # type: ignore[arg-type]  # a kwarg
    samples = int(props.get("samples_per_pixel", 1))
    if array.ndim == (3 if samples > 1 else 2):  # a single frame has no frame axis
        array = array[None]
    for frame in array:
        yield frame, props


def voi_window(ds: Dataset) -> tuple[float, float] | None:
    """The gray range ``(low, high)`` of the file's first VOI window, if it has a usable one."""
    try:
        center = float(np.ravel(ds.WindowCenter)[0])
        width = float(np.ravel(ds.WindowWidth)[0])
    except (AttributeError, KeyError, ValueError, TypeError, IndexError):
        return None
    if np.isfinite(center) and np.isfinite(width) and width >= 1:
        return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return None


def percentile_window_frames(count: int) -> range:
    """The frames whose values set the window when the file has none: every ``count // 16``-th
    (at most 31 frames), enough for stable percentiles without reading every frame."""
    return range(0, count, max(1, count // 16))


def percentile_window(values: np.ndarray) -> tuple[float, float]:
    """``(low, high)``: the 0.5 and 99.5 percentiles of modality values of
    :func:`percentile_window_frames` (float32, any shape)."""
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return low, high


def apply_window(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Modality values (float32) mapped linearly from ``[low, high]`` to 0-255 uint8."""
    scaled = (values - low) / max(high - low, 1e-6) * 255.0
    result: np.ndarray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return result


def _window_to_uint8(stack: np.ndarray, ds: Dataset) -> np.ndarray:
    """Map more-than-8-bit monochrome values to 0-255: the file's VOI window, else the 0.5-99.5
    percentiles of the whole video (one mapping for all frames, so brightness stays comparable).
    """
    values = apply_modality_lut(stack, ds).astype(np.float32)
    window = voi_window(ds)
    if window is None:
        picked = percentile_window_frames(len(values))
        window = percentile_window(values[picked.start : picked.stop : picked.step])
    return apply_window(values, *window)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, as FFmpeg's gray conversion and the Y of YBR_FULL."""
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def frame_to_gray(frame: np.ndarray, props: dict[str, str | int], ds: Dataset) -> np.ndarray:
    """One decoded frame as grayscale: uint8 when 8-bit, else its integer values for windowing."""
    interpretation = str(props.get("photometric_interpretation", ""))
    bits = int(props.get("bits_stored", 8))
    if interpretation == "PALETTE COLOR":
        frame = apply_color_lut(frame, ds)
        bits = 16 if frame.dtype.itemsize > 1 else 8
    if frame.ndim == 3:
        if bits > 8 or frame.dtype.itemsize > 1:
            frame = (frame.astype(np.float32) / ((1 << bits) - 1) * 255.0).clip(0, 255)
        if interpretation.startswith("YBR_FULL"):  # YBR_FULL(_422): Y is the luma
            luma: np.ndarray = np.clip(np.rint(frame[..., 0]), 0, 255).astype(np.uint8)
            return luma
        return _luma(frame)  # RGB, also what JPEG 2000 codecs make of YBR_ICT/YBR_RCT
    if bits <= 8 and frame.dtype.kind == "u":  # e.g. 8 bits stored in 16 allocated
        return frame.astype(np.uint8)
    result: np.ndarray = frame
    return result


def decode_dicom(data: bytes, *, max_frames: int, max_pixels: int) -> DecodedVideo:
    """Decode a DICOM image or cine loop to 8-bit grayscale frames.

    MONOCHROME1 is inverted, colour is reduced to luma, more than 8 bits are windowed. The result
    carries the SOP Instance UID, the frame rate from the timing attributes and the ultrasound
    regions; nothing that identifies the patient.

    Raises:
        InvalidInput: unparseable file, no pixel data, unsupported or undecodable transfer
            syntax, truncated pixel data, zero or too many frames, or frames too large.
    """
    with logscrub.log_budget():  # one upload's library complaints: bounded, scrubbed
        return _decode_dicom(data, max_frames=max_frames, max_pixels=max_pixels)


def _decode_dicom(data: bytes, *, max_frames: int, max_pixels: int) -> DecodedVideo:
    ds = read_dataset(data)
    count = check_geometry(ds, max_frames=max_frames, max_pixels=max_pixels)
    syntax = transfer_syntax(ds)
    frames: list[np.ndarray] = []
    props: dict[str, str | int] = {}
    try:
        for frame, props in _raw_frames(ds, syntax):
            frames.append(frame_to_gray(frame, props, ds))
        if len(frames) != count:
            raise InvalidInput(
                f"the DICOM file declares {count} frames but {len(frames)} could be decoded; "
                f"the file may be truncated; {SEND_HINT}"
            )
        stack = np.stack(frames)
        if stack.dtype != np.uint8:  # the Modality LUT and window come from the header too
            stack = _window_to_uint8(stack, ds)
    except InvalidInput:
        raise
    except (*PARSE_ERRORS, MemoryError) as err:
        raise decode_error(syntax, err) from err
    if str(props.get("photometric_interpretation", "")) == "MONOCHROME1":
        stack = 255 - stack  # MONOCHROME1: 0 is white
    try:  # header elements are parsed lazily, so a corrupt one surfaces only here
        uid = ds.get("SOPInstanceUID")
        sop_instance_uid = str(uid) if uid else None
        fps = frames_per_second(ds)
        regions = ultrasound_regions(ds)
    except PARSE_ERRORS as err:  # the message may quote file content: name the type only
        raise InvalidInput(
            f"could not read the DICOM header ({type(err).__name__}); {SEND_HINT}"
        ) from err
    return DecodedVideo(
        frames=np.ascontiguousarray(stack),
        fps=fps,
        sop_instance_uid=sop_instance_uid,
        regions=regions,
    )


def decode_error(syntax: UID, err: BaseException) -> InvalidInput:
    """The caller's error for pixel data that would not decode: the error type, never its
    text, which quotes header values ("... Photometric Interpretation value <value>")."""
    return InvalidInput(
        f"could not decode the DICOM pixel data ({syntax_label(syntax)}): "
        f"{type(err).__name__}; the file may be truncated or corrupt, or its image attributes "
        f"invalid; {SEND_HINT}"
    )


def first_line(err: BaseException) -> str:
    """An exception's first line, short: pixel-decoding errors describe data, never identity."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "no details"
