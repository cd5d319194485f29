"""DICOM decoding: files this project writes, files dcmtk writes, and pydicom's bundled files."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from lus.errors import InvalidInput
from lus.video import InputSpec, crop_frames, decode_video, make_clips
from lus.video.dicom import looks_like_dicom

PHI_NAME = "Doe^Jane^PHIMARKER"
PHI_ID = "MRN-PHIMARKER-0042"


def moving_frames(count: int = 6, height: int = 48, width: int = 64) -> np.ndarray:
    """Gray frames with a ramp and a moving bright bar: every value and frame differ."""
    ramp = np.tile(np.linspace(10, 240, width, dtype=np.uint8), (height, 1))
    frames = np.stack([np.roll(ramp, 5 * i, axis=1) for i in range(count)])
    for i in range(count):
        frames[i, 10:20, 4 * i : 4 * i + 8] = 255
    return frames


def colour_frames(count: int = 4, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB frames with independent channels, so a wrong colour conversion shows."""
    gray = moving_frames(count, height, width)
    return np.stack([gray, np.flip(gray, axis=2), np.roll(gray, 17, axis=1)], axis=-1)


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)


def us_dataset(
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    frame_time_ms: float | None = 40.0,
    bits: int = 8,
    regions: tuple[tuple[int, int, int, int, int, int], ...] = (),
) -> Dataset:
    """An Ultrasound Multi-frame Image with patient data set, as a scanner would write it.

    ``regions``: (x0, y0, x1, y1, spatial_format, data_type) with inclusive maxima, as DICOM.
    """
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = PHI_NAME
    ds.PatientID = PHI_ID
    ds.PatientBirthDate = "19700101"
    ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[2]
    ds.NumberOfFrames = pixels.shape[0]
    ds.SamplesPerPixel = 3 if pixels.ndim == 4 else 1
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 4:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
        ds.FrameIncrementPointer = 0x00181063
    if regions:
        items = []
        for x0, y0, x1, y1, spatial, data_type in regions:
            item = Dataset()
            item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
            item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
            item.RegionSpatialFormat, item.RegionDataType = spatial, data_type
            items.append(item)
        ds.SequenceOfUltrasoundRegions = Sequence(items)
    ds.PixelData = pixels.tobytes()
    return ds


def to_bytes(ds: Dataset, *, implicit: bool = False, bare: bool = False) -> bytes:
    buffer = io.BytesIO()
    if bare:  # no preamble, no file meta: what some gateways store
        ds = ds.copy()
        del ds.file_meta
        pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)
    else:
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# --- files this project writes ------------------------------------------------------------


@pytest.mark.parametrize("implicit", [False, True])
def test_uncompressed_multiframe_us_decodes_exactly_with_timing(implicit: bool) -> None:
    frames = moving_frames()
    ds = us_dataset(frames, frame_time_ms=33.3333)
    video = decode_video(to_bytes(ds, implicit=implicit))
    np.testing.assert_array_equal(video.frames, frames)
    assert video.fps == pytest.approx(30.0, abs=0.01)
    assert video.sop_instance_uid == ds.SOPInstanceUID
    assert video.regions == ()


def test_dicom_is_found_by_content_not_name(tmp_path: Path) -> None:
    data = to_bytes(us_dataset(moving_frames()))
    path = tmp_path / "clip.mp4"  # a misleading name
    path.write_bytes(data)
    assert decode_video(path).num_frames == 6
    assert looks_like_dicom(data) and not looks_like_dicom(b"\x00\x00\x00\x18ftypisom" * 20)


def test_bare_dataset_without_preamble_or_file_meta() -> None:
    data = to_bytes(us_dataset(moving_frames()), bare=True)
    assert data[128:132] != b"DICM"
    np.testing.assert_array_equal(decode_video(data).frames, moving_frames())


@pytest.mark.parametrize(
    ("attributes", "fps"),
    [
        ({"FrameTime": 50.0}, 20.0),
        ({"FrameTimeVector": [0, 40, 40, 40, 40, 40]}, 25.0),
        ({"CineRate": 18}, 18.0),
        ({"RecommendedDisplayFrameRate": 12}, 12.0),
        ({}, 0.0),
        ({"FrameTime": 0.0, "CineRate": 15}, 15.0),  # a zero frame time is not trusted
    ],
)
def test_frame_rate_from_timing_attributes(attributes: dict[str, object], fps: float) -> None:
    ds = us_dataset(moving_frames(), frame_time_ms=None)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    assert decode_video(to_bytes(ds)).fps == pytest.approx(fps)


def test_monochrome1_is_inverted() -> None:
    frames = moving_frames()
    video = decode_video(to_bytes(us_dataset(frames, photometric="MONOCHROME1")))
    np.testing.assert_array_equal(video.frames, 255 - frames)


def test_rgb_becomes_luma() -> None:
    rgb = colour_frames()
    video = decode_video(to_bytes(us_dataset(rgb, photometric="RGB")))
    np.testing.assert_array_equal(video.frames, luma(rgb.astype(float)))


def test_ybr_full_uses_the_luma_channel() -> None:
    rgb = colour_frames()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    video = decode_video(to_bytes(us_dataset(ybr, photometric="YBR_FULL")))
    assert np.abs(video.frames.astype(int) - luma(rgb.astype(float))).max() <= 1


def test_ybr_full_422_uncompressed_is_subsampled_and_decoded() -> None:
    rgb = colour_frames()
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL").astype(np.uint16)
    # 4:2:2 stores Y0 Y1 Cb Cr for each horizontal pair of pixels (chroma averaged).
    y = ybr[..., 0]
    cb = (ybr[..., 0::2, 1] + ybr[..., 1::2, 1] + 1) // 2
    cr = (ybr[..., 0::2, 2] + ybr[..., 1::2, 2] + 1) // 2
    packed = np.stack([y[..., 0::2], y[..., 1::2], cb, cr], axis=-1).astype(np.uint8)
    ds = us_dataset(ybr.astype(np.uint8), photometric="YBR_FULL_422")
    ds.PixelData = packed.tobytes()
    video = decode_video(to_bytes(ds))
    np.testing.assert_array_equal(video.frames, y.astype(np.uint8))


def test_more_than_8_bits_uses_the_window_when_present() -> None:
    values = (moving_frames().astype(np.uint16) * 16).astype(np.uint16)  # 12-bit range
    ds = us_dataset(values, bits=12)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    frames = decode_video(to_bytes(ds)).frames
    assert frames.dtype == np.uint8
    expected = np.clip(np.rint((values + 0.5) / 4095 * 255), 0, 255)
    assert np.abs(frames.astype(int) - expected).max() <= 1


def test_more_than_8_bits_without_window_spans_the_gray_range() -> None:
    values = (moving_frames().astype(np.uint16) * 4 + 1000).astype(np.uint16)
    frames = decode_video(to_bytes(us_dataset(values, bits=12))).frames
    assert frames.min() <= 5 and frames.max() >= 250
    # Order is kept: brighter input stays brighter.
    assert np.corrcoef(frames.ravel(), values.ravel())[0, 1] > 0.99
    inverted = decode_video(to_bytes(us_dataset(values, bits=12, photometric="MONOCHROME1")))
    np.testing.assert_array_equal(inverted.frames, 255 - frames)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
@pytest.mark.parametrize("colour", [False, True])
def test_lossless_compression_written_by_pydicom(syntax: str, colour: bool) -> None:
    pixels = colour_frames() if colour else moving_frames()
    ds = us_dataset(pixels, photometric="RGB" if colour else "MONOCHROME2")
    ds.compress(syntax)
    assert ds.file_meta.TransferSyntaxUID == syntax
    expected = luma(pixels.astype(float)) if colour else pixels
    np.testing.assert_array_equal(decode_video(to_bytes(ds)).frames, expected)


# --- files written by pydicom's maintainers, GDCM and dcmtk (bundled with pydicom) -----------


def bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom no longer bundles {name}"
    return Path(path)


def test_bundled_ultrasound_multiframe_jpeg_ybr_422_with_regions() -> None:
    video = decode_video(bundled("examples_ybr_color.dcm"))
    assert video.frames.shape == (30, 240, 320) and video.frames.dtype == np.uint8
    assert video.fps > 0
    assert video.sop_instance_uid
    # Its region describes the 640x480 original, not these 320x240 frames: kept as metadata,
    # but cropping falls back to the pixel heuristic instead of trusting it.
    assert len(video.regions) == 1 and video.regions[0].box.x1 > 320
    cropped = crop_frames(video, "auto")
    assert cropped.crop is not None and cropped.crop.x1 <= 320


def test_bundled_palette_ultrasound_regions_that_do_not_fit_are_not_trusted() -> None:
    video = decode_video(bundled("examples_palette.dcm"))
    assert video.frames.shape == (1, 350, 800) and video.frames.std() > 5
    two_d = next(r for r in video.regions if r.is_2d_image and r.is_tissue)
    assert two_d.box.y1 > 350  # drawn for a taller original frame
    assert any(r.spatial_format == 4 for r in video.regions)  # and a waveform region
    cropped = crop_frames(video, "auto")
    assert cropped.crop is not None and cropped.crop.y1 <= 350


def test_crop_uses_the_largest_2d_tissue_region_of_the_file() -> None:
    frames = np.zeros((4, 120, 160), dtype=np.uint8)
    frames[:, 10:70, 20:140] = moving_frames(4, 60, 120)
    regions = (
        (20, 10, 139, 69, 1, 1),  # 2D tissue
        (60, 20, 99, 49, 1, 2),  # colour flow inside it
        (0, 75, 159, 119, 3, 3),  # spectral Doppler strip below: larger, but not 2D
    )
    video = decode_video(to_bytes(us_dataset(frames, regions=regions)))
    clips = make_clips(video, InputSpec(frames_per_clip=4, size=32, clips=1, crop="auto"))
    cropped = crop_frames(video, "auto")
    assert cropped.crop is not None
    assert (cropped.crop.x0, cropped.crop.y0, cropped.crop.x1, cropped.crop.y1) == (20, 10, 140, 70)
    np.testing.assert_array_equal(cropped.frames, moving_frames(4, 60, 120))
    assert clips.shape == (1, 4, 32, 32) and clips.min() > 0  # no black margin was resized in


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL (dcmtk)
        "SC_rgb_dcmtk_+eb+cy+np.dcm",  # JPEG baseline, YBR_FULL_422 (dcmtk)
        "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless, RGB (GDCM)
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_jls_lossy_sample.dcm",  # JPEG-LS near-lossless
        "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG baseline, RGB kept (dcmtk)
    ],
)
def test_bundled_colour_files_of_one_picture_agree(name: str) -> None:
    """The same test pattern in many syntaxes decodes to the same gray picture as lossless RLE."""
    reference = decode_video(bundled("SC_rgb_rle_2frame.dcm")).frames[0].astype(int)
    frames = decode_video(bundled(name)).frames
    assert frames.shape == (1, 100, 100)
    assert np.abs(frames[0].astype(int) - reference).mean() < 4


@pytest.mark.parametrize(
    "name", ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_bundled_16_bit_files_agree_across_syntaxes(name: str) -> None:
    reference = decode_video(bundled("MR_small.dcm")).frames
    np.testing.assert_array_equal(decode_video(bundled(name)).frames, reference)


def test_bundled_jpeg_2000_ultrasound() -> None:
    video = decode_video(bundled("examples_jpeg2k.dcm"))
    assert video.frames.shape == (1, 480, 640) and video.frames.std() > 10


# --- files written by dcmtk (Debian package "dcmtk"; CI installs it) ------------------------


def dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"dcmtk's {tool} is not installed (Debian: apt-get install dcmtk)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs dcmtk: a missing tool must not pass silently
        pytest.skip(message)
    return path


def jpeg_file(path: Path, rgb: np.ndarray) -> None:
    """A baseline JFIF file encoded by FFmpeg's MJPEG encoder (not by pydicom)."""
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.shape[1], rgb.shape[0], "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qscale": "2"}
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
    path.write_bytes(b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)]))


def test_img2dcm_jpeg_secondary_capture(tmp_path: Path) -> None:
    rgb = colour_frames(1, 64, 96)[0]
    jpeg, out = tmp_path / "image.jpg", tmp_path / "image.dcm"
    jpeg_file(jpeg, rgb)
    subprocess.run([dcmtk("img2dcm"), str(jpeg), str(out)], check=True, capture_output=True)
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    video = decode_video(out)
    assert video.frames.shape == (1, 64, 96)
    assert np.abs(video.frames[0].astype(int) - luma(rgb.astype(float))).mean() < 4


@pytest.mark.parametrize(
    ("tool", "options", "syntax", "tolerance"),
    [
        ("dcmcrle", [], RLELossless, 0),
        ("dcmcjpls", [], JPEGLSLossless, 0),
        ("dcmcjpeg", [], "1.2.840.10008.1.2.4.70", 0),  # JPEG lossless SV1
        (
            "dcmcjpeg",
            ["+eb", "+q", "95", "+sr"],
            "1.2.840.10008.1.2.4.50",
            6,
        ),  # baseline; +sr: keep 0-255
    ],
)
@pytest.mark.parametrize("colour", [False, True])
def test_dcmtk_compressed_ultrasound_cine(
    tmp_path: Path, tool: str, options: list[str], syntax: str, tolerance: int, colour: bool
) -> None:
    pixels = colour_frames(5) if colour else moving_frames(5)
    source, out = tmp_path / "plain.dcm", tmp_path / "compressed.dcm"
    regions = ((4, 2, 59, 45, 1, 1),)
    ds = us_dataset(pixels, photometric="RGB" if colour else "MONOCHROME2", regions=regions)
    source.write_bytes(to_bytes(ds))
    subprocess.run([dcmtk(tool), *options, str(source), str(out)], check=True, capture_output=True)
    assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == syntax
    video = decode_video(out)
    expected = luma(pixels.astype(float)) if colour else pixels
    assert video.frames.shape == expected.shape
    assert np.abs(video.frames.astype(int) - expected).mean() <= tolerance
    assert video.fps == pytest.approx(25.0)
    assert video.regions[0].box.x0 == 4 and video.regions[0].box.x1 == 60


# --- bad files --------------------------------------------------------------------------------


def test_no_pixel_data_is_refused() -> None:
    ds = us_dataset(moving_frames())
    del ds.PixelData
    with pytest.raises(InvalidInput, match="no pixel data"):
        decode_video(to_bytes(ds))
    with pytest.raises(InvalidInput, match="no pixel data"):
        decode_video(bundled("rtplan.dcm"))


def test_unsupported_transfer_syntax_is_refused() -> None:
    ds = us_dataset(moving_frames())
    ds.compress(RLELossless)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2 video in DICOM
    with pytest.raises(InvalidInput, match="is not supported"):
        decode_video(to_bytes(ds))


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")  # pydicom on a cut file
@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_pixel_data_is_refused(compressed: bool) -> None:
    ds = us_dataset(moving_frames())
    if compressed:
        ds.compress(RLELossless)
    data = to_bytes(ds)
    for cut in (len(data) - 7, len(data) - 300, len(data) // 2):
        with pytest.raises(InvalidInput, match=r"truncated|corrupt"):
            decode_video(data[:cut])


def test_zero_frames_and_empty_pixel_data_are_refused() -> None:
    ds = us_dataset(moving_frames())
    ds.NumberOfFrames = 0
    with pytest.raises(InvalidInput, match="empty"):
        decode_video(to_bytes(ds))
    ds = us_dataset(moving_frames())
    ds.PixelData = b""
    with pytest.raises(InvalidInput):
        decode_video(to_bytes(ds))


def test_too_many_frames_are_refused_before_decoding() -> None:
    with pytest.raises(InvalidInput, match="more than 3"):
        decode_video(to_bytes(us_dataset(moving_frames())), max_frames=3)


def test_garbage_after_the_dicom_magic_is_refused() -> None:
    with pytest.raises(InvalidInput):
        decode_video(b"\x00" * 128 + b"DICM" + b"\xff\x13" * 300)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about what it repairs
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_dicom_never_raises_anything_but_invalid_input(data: st.DataObject) -> None:
    original = bytearray(FUZZ_SEED)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(original) - 1))
        original[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(132, len(original)))
    try:
        video = decode_video(bytes(original[:cut]), max_frames=50)
    except InvalidInput:
        return
    assert video.frames.dtype == np.uint8 and video.frames.ndim == 3
    cropped = crop_frames(video, "auto")  # regions may be garbage now: still a valid crop
    assert cropped.frames.size > 0


def _fuzz_seed() -> bytes:
    ds = us_dataset(moving_frames(3, 16, 16), regions=((0, 0, 15, 15, 1, 1),))
    ds.compress(RLELossless)
    return to_bytes(ds)


FUZZ_SEED = _fuzz_seed()


# --- no patient data in logs ---------------------------------------------------------------


def test_patient_data_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = to_bytes(us_dataset(moving_frames()))
    pydicom.config.debug(True)  # pydicom then logs every element it reads, values included
    try:
        video = decode_video(good)
        with pytest.raises(InvalidInput) as refused:
            decode_video(good[: len(good) - 100])
        make_clips(video, InputSpec(frames_per_clip=4, size=16, clips=1, crop="auto"))
    finally:
        pydicom.config.debug(False)
    assert caplog.records, "pydicom's debug logging should have produced records"
    for record in caplog.records:
        text = record.getMessage()
        assert "PHIMARKER" not in text and "19700101" not in text, record.name
    assert "PHIMARKER" not in str(refused.value)
    assert "PHIMARKER" not in repr(video)
