"""Video reading shared by the biomarker tier and the trainer: decode, crop, sample, resize.

``decode_video`` + ``make_clips`` hold every frame of a video; ``decode_clips`` goes from the
uploaded bytes to the clips in bounded memory (only the sampled frames are kept, and for DICOM
only they are decompressed), within ``DecodeLimits`` and an optional server-wide ``DecodeBudget``.
"""

from lus.video.decode import decode_video, frames_from_raw
from lus.video.limits import DecodeBudget, DecodeLimits
from lus.video.pipeline import decode_clips
from lus.video.preprocess import InputSpec, make_clips
from lus.video.region import CropMode, crop_frames
from lus.video.sampled import (
    HashMode,
    SampledVideo,
    sample_decoded,
    sampled_pixel_hash,
)
from lus.video.sampling import clip_indices, segment_indices
from lus.video.types import CropBox, DecodedVideo, Region

__all__ = [
    "CropBox",
    "CropMode",
    "DecodeBudget",
    "DecodeLimits",
    "DecodedVideo",
    "HashMode",
    "InputSpec",
    "Region",
    "SampledVideo",
    "clip_indices",
    "crop_frames",
    "decode_clips",
    "decode_video",
    "frames_from_raw",
    "make_clips",
    "sample_decoded",
    "sampled_pixel_hash",
    "segment_indices",
]
