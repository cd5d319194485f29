"""Video reading shared by the biomarker tier and the trainer: decode, sample, resize."""

from lus.video.decode import DecodedVideo, decode_video, frames_from_raw
from lus.video.preprocess import InputSpec, make_clips
from lus.video.sampling import clip_indices, segment_indices

__all__ = [
    "DecodedVideo",
    "InputSpec",
    "clip_indices",
    "decode_video",
    "frames_from_raw",
    "make_clips",
    "segment_indices",
]
