"""decode_clips on DICOM: only the sampled frames are decompressed, and the clips, the summary
and (``hash_mode="all"``) the pixel hash equal those of ``decode_video`` + ``make_clips`` in every
transfer syntax, for files written by pydicom, dcmtk and GDCM (pydicom's bundled files); JPEG 2000
with its reduced-resolution decode turned off (it has its own tests: test_decode_jpeg2000.py)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.pixels import convert_color_space
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

import lus.video.dicom_frames as dicom_frames
import tests.unit.lus.test_dicom as cases
from lus.errors import InvalidInput
from lus.feature_store import pixel_hash
from lus.video import DecodeBudget, DecodeLimits, InputSpec, decode_clips, decode_video, make_clips
from lus.video.dicom import pixel_decoder, read_dataset, transfer_syntax

SMALL = InputSpec(frames_per_clip=4, size=24, clips=2)
REGION = ((4, 2, 59, 45, 1, 1),)


def assert_same_as_old(data: bytes, spec: InputSpec = SMALL, threads: int = 3) -> None:
    """Byte-identical clips in every syntax; JPEG 2000 decoded at full size for that
    (``reduce_jpeg2000=False``; the reduced decode is held to a tolerance in
    ``test_decode_jpeg2000.py``)."""
    old = decode_video(data)
    limits = DecodeLimits(threads=threads, reduce_jpeg2000=False)
    for mode in ("all", "sampled"):
        new = decode_clips(data, spec, limits, hash_mode=mode)
        np.testing.assert_array_equal(new.clips, make_clips(old, spec))
        assert (new.num_frames, new.height, new.width) == old.frames.shape
        assert new.fps == old.fps
        assert new.sop_instance_uid == old.sop_instance_uid
        assert new.regions == old.regions
        if mode == "all":
            assert new.pixel_hash == pixel_hash(old.frames)


def all_crops(data: bytes, threads: int = 3) -> None:
    for crop in ("none", "auto"):
        spec = InputSpec(frames_per_clip=4, size=24, clips=2, crop=crop)
        assert_same_as_old(data, spec, threads)


# --- the same results in every syntax ---------------------------------------------------------


@pytest.mark.parametrize("syntax", [None, RLELossless, JPEGLSLossless, JPEG2000Lossless])
@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("regions", [(), REGION])
@pytest.mark.parametrize("threads", [1, 3])
def test_pydicom_written_cine_equals_the_old_path(
    syntax: str | None, colour: bool, regions: tuple[tuple[int, ...], ...], threads: int
) -> None:
    pixels = cases.colour_frames(21) if colour else cases.moving_frames(21)
    ds = cases.us_dataset(pixels, photometric="RGB" if colour else "MONOCHROME2", regions=regions)
    if syntax:
        ds.compress(syntax)
    all_crops(cases.to_bytes(ds), threads)


def twelve_bit(count: int = 40) -> np.ndarray:
    return (cases.moving_frames(count).astype(np.uint16) * 4 + 1000).astype(np.uint16)


def with_window(ds: Dataset) -> Dataset:
    ds.WindowCenter, ds.WindowWidth = 1400, 900
    return ds


@pytest.mark.parametrize(
    "make",
    [
        lambda: cases.us_dataset(cases.moving_frames(9), photometric="MONOCHROME1"),
        lambda: cases.us_dataset(twelve_bit(), bits=12),  # window from percentiles
        lambda: cases.us_dataset(twelve_bit(), bits=12, photometric="MONOCHROME1"),
        lambda: with_window(cases.us_dataset(twelve_bit(), bits=12)),
        lambda: cases.us_dataset(twelve_bit(7), bits=12),  # fewer frames than 16
    ],
    ids=["monochrome1", "12bit-percentiles", "12bit-monochrome1", "12bit-voi", "12bit-short"],
)
@pytest.mark.parametrize("syntax", [None, JPEGLSLossless, RLELossless])
def test_monochrome_windowing_and_inversion_equal_the_old_path(
    make: Callable[[], Dataset], syntax: str | None
) -> None:
    ds = make()
    if syntax:
        ds.compress(syntax)
    all_crops(cases.to_bytes(ds))


def test_ybr_full_422_uncompressed_implicit_and_bare() -> None:
    rgb = cases.colour_frames(9)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint16)
    y = ybr[..., 0]
    cb = (ybr[..., 0::2, 1] + ybr[..., 1::2, 1] + 1) // 2
    cr = (ybr[..., 0::2, 2] + ybr[..., 1::2, 2] + 1) // 2
    packed = np.stack([y[..., 0::2], y[..., 1::2], cb, cr], axis=-1).astype(np.uint8)
    ds = cases.us_dataset(ybr.astype(np.uint8), photometric="YBR_FULL_422")
    ds.PixelData = packed.tobytes()
    all_crops(cases.to_bytes(ds))
    all_crops(cases.to_bytes(cases.us_dataset(cases.moving_frames()), implicit=True))
    all_crops(cases.to_bytes(cases.us_dataset(cases.moving_frames()), bare=True))


@pytest.mark.parametrize(
    "name",
    [
        "examples_ybr_color.dcm",  # JPEG baseline cine, YBR_FULL_422, regions
        "examples_palette.dcm",
        "examples_jpeg2k.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_jls_lossy_sample.dcm",  # JPEG-LS near-lossless
        "SC_rgb_dcmtk_+eb+cr.dcm",
        "SC_rgb_rle_2frame.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",
        "MR_small_bigendian.dcm",  # Explicit VR Big Endian
        "MR_small_expb.dcm",
        "ExplVR_BigEnd.dcm",
        "SC_rgb_small_odd_big_endian.dcm",  # odd length, padded, big endian
        "SC_rgb_small_odd.dcm",
        "MR_small_implicit.dcm",
        "rtdose.dcm",  # 15 frames, 32-bit
        "rtdose_rle.dcm",
        "SC_rgb_rle_16bit_2frame.dcm",
        "SC_rgb_rle_32bit_2frame.dcm",
        "examples_rgb_color.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "JPGExtended.dcm",
        "MR_small_jp2klossless.dcm",
        "SC_jpeg_no_color_transform.dcm",
        "liver_1frame.dcm",
        "CT_small.dcm",
    ],
)
def test_bundled_files_equal_the_old_path(name: str) -> None:
    all_crops(cases.bundled(name).read_bytes())


@pytest.mark.parametrize(
    "name", ["MR_small_padded.dcm", "SC_rgb_jpeg.dcm", "MR_truncated.dcm", "rtplan.dcm"]
)
def test_bundled_files_the_old_path_refuses_are_refused(name: str) -> None:
    data = cases.bundled(name).read_bytes()
    with pytest.raises(InvalidInput):
        decode_video(data)
    with pytest.raises(InvalidInput):
        decode_clips(data, SMALL)


@pytest.mark.parametrize(
    ("tool", "options"),
    [
        ("dcmcrle", []),
        ("dcmcjpls", []),
        ("dcmcjpls", ["+en"]),  # near-lossless
        ("dcmcjpeg", []),  # JPEG lossless
        ("dcmcjpeg", ["+eb", "+q", "95", "+sr"]),  # baseline
    ],
)
@pytest.mark.parametrize("colour", [False, True])
def test_dcmtk_compressed_cine_equals_the_old_path(
    tmp_path: Path, tool: str, options: list[str], colour: bool
) -> None:
    pixels = cases.colour_frames(17) if colour else cases.moving_frames(17)
    source, out = tmp_path / "plain.dcm", tmp_path / "compressed.dcm"
    ds = cases.us_dataset(pixels, photometric="RGB" if colour else "MONOCHROME2", regions=REGION)
    source.write_bytes(cases.to_bytes(ds))
    command = [cases.dcmtk(tool), *options, str(source), str(out)]
    subprocess.run(command, check=True, capture_output=True)
    all_crops(out.read_bytes())


def jpeg_ls_frames(data: bytes) -> tuple[Dataset, list[bytes]]:
    ds = read_dataset(data)
    count = int(ds.get("NumberOfFrames") or 1)
    frames = [b"".join(f) for f in generate_fragmented_frames(ds.PixelData, number_of_frames=count)]
    return ds, frames


@pytest.mark.parametrize(
    "make",
    [
        lambda: cases.bundled("SC_rgb_jls_lossy_sample.dcm").read_bytes(),
        lambda: cases.bundled("MR_small_jpeg_ls_lossless.dcm").read_bytes(),
        lambda: cases.to_bytes(_compressed(cases.colour_frames(3), "RGB")),
        lambda: cases.to_bytes(_compressed(twelve_bit(3), "MONOCHROME2", bits=12)),
    ],
    ids=["near-lossless-rgb", "lossless-16bit", "lossless-rgb", "lossless-12bit"],
)
def test_both_jpeg_ls_plugins_give_the_same_pixels(make: Callable[[], bytes]) -> None:
    """decode_clips prefers CharLS (pyjpegls) to pydicom's default libjpeg for speed: JPEG-LS
    reconstruction is fully specified, so both must agree exactly."""
    ds, frames = jpeg_ls_frames(make())
    decoder = pixel_decoder(transfer_syntax(ds))
    assert {"pyjpegls", "pylibjpeg"} <= set(decoder.available_plugins)
    options = as_pixel_options(ds, number_of_frames=1)
    for frame in frames:
        results = [
            decoder.as_array(encapsulate([frame]), decoding_plugin=plugin, as_rgb=False, **options)
            for plugin in ("pyjpegls", "pylibjpeg")
        ]
        np.testing.assert_array_equal(results[0][0], results[1][0])
        assert results[0][1] == results[1][1]


@pytest.mark.parametrize(
    "make",
    [
        lambda: cases.bundled("SC_rgb_rle_2frame.dcm").read_bytes(),
        lambda: cases.bundled("SC_rgb_rle_16bit_2frame.dcm").read_bytes(),
        lambda: cases.bundled("SC_rgb_rle_32bit_2frame.dcm").read_bytes(),
        lambda: cases.bundled("MR_small_RLE.dcm").read_bytes(),
        lambda: cases.bundled("rtdose_rle.dcm").read_bytes(),
        lambda: cases.to_bytes(_compressed(cases.colour_frames(3), "RGB", syntax=RLELossless)),
        lambda: cases.to_bytes(
            _compressed(twelve_bit(3), "MONOCHROME2", bits=12, syntax=RLELossless)
        ),
    ],
    ids=["rgb", "rgb-16bit", "rgb-32bit", "mr-16bit", "rtdose-32bit", "pydicom-rgb", "12bit"],
)
def test_both_rle_plugins_give_the_same_pixels(make: Callable[[], bytes]) -> None:
    """decode_clips prefers pylibjpeg-rle to pydicom's numpy RLE decoder for speed: RLE is
    lossless, so both must agree exactly."""
    ds, frames = jpeg_ls_frames(make())
    decoder = pixel_decoder(transfer_syntax(ds))
    assert {"pydicom", "pylibjpeg"} <= set(decoder.available_plugins)
    options = as_pixel_options(ds, number_of_frames=1)
    options.pop("extended_offsets", None)
    for frame in frames:
        results = [
            decoder.as_array(encapsulate([frame]), decoding_plugin=plugin, as_rgb=False, **options)
            for plugin in ("pylibjpeg", "pydicom")
        ]
        np.testing.assert_array_equal(results[0][0], results[1][0])
        assert results[0][1] == results[1][1]


def _compressed(
    pixels: np.ndarray, photometric: str, bits: int = 8, syntax: str = JPEGLSLossless
) -> Dataset:
    ds = cases.us_dataset(pixels, photometric=photometric, bits=bits)
    ds.compress(syntax)
    return ds


# --- only the sampled frames are decompressed -------------------------------------------------


class DecodeSpy:
    """Counts the frames decode_clips decompresses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        for name in ("decode_encoded", "decode_native"):
            original = getattr(dicom_frames._PixelSource, name)
            monkeypatch.setattr(dicom_frames._PixelSource, name, self._counting(original))

    def _counting(self, original: Callable[..., object]) -> Callable[..., object]:
        def counted(*args: object) -> object:
            self.calls += 1
            return original(*args)

        return counted


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_only_sampled_frames_are_decompressed(
    monkeypatch: pytest.MonkeyPatch, syntax: str | None
) -> None:
    ds = cases.us_dataset(cases.moving_frames(200), regions=REGION)
    if syntax:
        ds.compress(syntax)
    data = cases.to_bytes(ds)
    spy = DecodeSpy(monkeypatch)
    result = decode_clips(data, InputSpec(frames_per_clip=15, size=16, clips=4))
    assert spy.calls == result.decoded_frames == 60 and result.num_frames == 200
    spy.calls = 0  # a crop from the DICOM region needs no more frames
    decode_clips(data, InputSpec(frames_per_clip=15, size=16, clips=4, crop="auto"))
    assert spy.calls == 60
    spy.calls = 0
    decode_clips(data, InputSpec(frames_per_clip=15, size=16, clips=4), hash_mode="all")
    assert spy.calls == 200


def test_sampled_hash_equals_hashing_the_old_frames() -> None:
    from lus.video import sampled_pixel_hash

    data = cases.to_bytes(cases.us_dataset(cases.moving_frames(30)))
    assert decode_clips(data, SMALL).pixel_hash == sampled_pixel_hash(decode_video(data), SMALL)


# --- files that lie, bombs and bad files ------------------------------------------------------


@pytest.mark.parametrize("syntax", [None, RLELossless, JPEGLSLossless])
def test_under_declared_frames_are_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch, syntax: str | None
) -> None:
    ds = cases.us_dataset(cases.moving_frames(8))
    if syntax:
        ds.compress(syntax)
    ds.NumberOfFrames = 5
    data = cases.to_bytes(ds)
    with pytest.raises(InvalidInput):  # the old path refuses it too (after decoding everything)
        decode_video(data)
    spy = DecodeSpy(monkeypatch)
    with pytest.raises(InvalidInput, match="declares 5 frames but 8 could be decoded"):
        decode_clips(data, SMALL)
    assert spy.calls == 0


@pytest.mark.parametrize("syntax", [None, RLELossless, JPEGLSLossless])
def test_over_declared_frames_are_refused(syntax: str | None) -> None:
    ds = cases.us_dataset(cases.moving_frames(8))
    if syntax:
        ds.compress(syntax)
    ds.NumberOfFrames = 10
    data = cases.to_bytes(ds)
    with pytest.raises(InvalidInput):
        decode_video(data)
    with pytest.raises(InvalidInput, match=r"declares 10 frames but 8|truncated|corrupt"):
        decode_clips(data, SMALL)


def bomb_header(frames: int = 5000, rows: int = 4096, columns: int = 4096) -> bytes:
    """A header declaring a huge cine over a few bytes of pixel data."""
    ds = cases.us_dataset(cases.moving_frames(1, 8, 8))
    ds.compress(RLELossless)
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames, rows, columns
    return cases.to_bytes(ds)


def test_a_5000_frame_4096_square_header_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bomb_header()
    assert len(data) < 10_000

    def no_decoder(syntax: object) -> None:
        raise AssertionError("a decoder was chosen: the header should have been refused")

    monkeypatch.setattr(dicom_frames, "pixel_decoder", no_decoder)
    with pytest.raises(InvalidInput, match=r"5000 frames of 4096x4096 = 83886080000 pixels"):
        decode_clips(data, InputSpec())


def test_request_byte_limit_is_checked_from_the_header() -> None:
    data = cases.to_bytes(cases.us_dataset(cases.colour_frames(6), photometric="RGB"))
    with pytest.raises(InvalidInput, match=r"would hold \d+ bytes at once, more than the limit"):
        decode_clips(data, SMALL, DecodeLimits(max_request_bytes=10_000))
    budget = DecodeBudget(1 << 30)
    result = decode_clips(data, SMALL, budget=budget)
    assert result.threads >= 1 and budget.in_use_bytes == 0


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_pixel_data_is_refused(compressed: bool) -> None:
    ds = cases.us_dataset(cases.moving_frames())
    if compressed:
        ds.compress(RLELossless)
    data = cases.to_bytes(ds)
    budget = DecodeBudget(1 << 30)
    for cut in (len(data) - 7, len(data) - 300, len(data) // 2):
        with pytest.raises(InvalidInput, match=r"truncated|corrupt"):
            decode_clips(data[:cut], SMALL, budget=budget)
    assert budget.in_use_bytes == 0


def test_unsupported_syntax_and_missing_pixels_are_refused_as_before() -> None:
    ds = cases.us_dataset(cases.moving_frames())
    ds.compress(RLELossless)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    with pytest.raises(InvalidInput, match="is not supported"):
        decode_clips(cases.to_bytes(ds), SMALL)
    ds = cases.us_dataset(cases.moving_frames())
    del ds.PixelData
    with pytest.raises(InvalidInput, match="no pixel data"):
        decode_clips(cases.to_bytes(ds), SMALL)
    with pytest.raises(InvalidInput, match="more than 3"):
        decode_clips(cases.to_bytes(cases.us_dataset(cases.moving_frames())), SMALL,
                     DecodeLimits(max_frames=3))  # fmt: skip


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about what it repairs
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_dicom_never_raises_anything_but_invalid_input(data: st.DataObject) -> None:
    original = bytearray(cases.FUZZ_SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(132, len(original)))
    crop = data.draw(st.sampled_from(["none", "auto"]))
    spec = InputSpec(frames_per_clip=3, size=8, clips=2, crop=crop)
    try:
        result = decode_clips(bytes(original[:cut]), spec, DecodeLimits(max_frames=50))
    except InvalidInput:
        return
    assert result.clips.shape == (2, 3, 8, 8) and result.clips.dtype == np.uint8


def test_patient_data_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = cases.to_bytes(cases.us_dataset(cases.moving_frames(), regions=REGION))
    pydicom.config.debug(True)
    try:
        result = decode_clips(good, InputSpec(frames_per_clip=4, size=16, clips=1, crop="auto"))
        with pytest.raises(InvalidInput) as refused:
            decode_clips(good[: len(good) - 100], SMALL)
    finally:
        pydicom.config.debug(False)
    for record in caplog.records:
        text = record.getMessage()
        assert "PHIMARKER" not in text and "19700101" not in text, record.name
    assert "PHIMARKER" not in str(refused.value)
    assert "PHIMARKER" not in repr(result)


# --- pixel data read in place -----------------------------------------------------------------


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_pixel_data_stays_in_the_upload(syntax: str | None) -> None:
    """pydicom would copy the pixel data (the size of the file again); it is read in place."""
    ds = cases.us_dataset(cases.moving_frames(5))
    if syntax:
        ds.compress(syntax)
    data = cases.to_bytes(ds)
    parsed, pixels = dicom_frames.read_sharing_pixels(data)
    assert pixels is not None and pixels.source is data
    if syntax is None:
        assert isinstance(parsed.PixelData, memoryview) and parsed.PixelData.obj is data
    else:
        assert "PixelData" not in parsed and pixels.length is None


@pytest.mark.parametrize("syntax", [None, RLELossless, JPEGLSLossless])
def test_files_read_by_pydicom_as_a_whole_give_the_same_clips(
    monkeypatch: pytest.MonkeyPatch, syntax: str | None
) -> None:
    """Where the pixel data cannot be located in place, pydicom reads it (and copies it)."""
    ds = cases.us_dataset(cases.colour_frames(9), photometric="RGB", regions=REGION)
    if syntax:
        ds.compress(syntax)
    data = cases.to_bytes(ds)
    monkeypatch.setattr(dicom_frames, "_locate_pixel_data", lambda *args: None)
    _, pixels = dicom_frames.read_sharing_pixels(data)
    assert pixels is not None and pixels.source is not data
    all_crops(data)
