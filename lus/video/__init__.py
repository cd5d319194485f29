"""Video reading shared by the biomarker tier and the trainer: decode, crop, sample, resize."""

from lus.video.decode import decode_video, frames_from_raw
from lus.video.preprocess import InputSpec, make_clips
from lus.video.region import CropMode, crop_frames
from lus.video.sampling import clip_indices, segment_indices
from lus.video.types import CropBox, DecodedVideo, Region

__all__ = [
    "CropBox",
    "CropMode",
    "DecodedVideo",
    "InputSpec",
    "Region",
    "clip_indices",
    "crop_frames",
    "decode_video",
    "frames_from_raw",
    "make_clips",
    "segment_indices",
]
