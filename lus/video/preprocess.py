"""Turn decoded frames into model input: sampled clips, bilinear-resized, still uint8.

Normalisation and the gray-to-3-channel expansion happen inside the model (its first layer),
so the artifact carries them and the bytes moved to an accelerator stay small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import av
import numpy as np

from lus.video.region import CropMode, check_crop_mode, crop_frames
from lus.video.sampling import clip_indices, segment_indices
from lus.video.types import DecodedVideo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: frames per clip, square frame size, clips averaged at inference.

    ``crop`` says whether frames are first cut to the ultrasound imaging region (``"auto"``:
    DICOM ultrasound regions, else a pixel heuristic) or kept whole (``"none"``); a model must be
    served with the crop it was trained with, so the artifact carries it.
    """

    frames_per_clip: int = 15
    size: int = 224
    clips: int = 4
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    crop: CropMode = "none"

    def __post_init__(self) -> None:
        check_crop_mode(self.crop)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> InputSpec:
        return cls(
            frames_per_clip=int(data["frames_per_clip"]),  # type: ignore[call-overload]
            size=int(data["size"]),  # type: ignore[call-overload]
            clips=int(data["clips"]),  # type: ignore[call-overload]
            mean=tuple(data["mean"]),  # type: ignore[arg-type]
            std=tuple(data["std"]),  # type: ignore[arg-type]
            # Artifacts written before cropping existed were trained on whole frames.
            crop=check_crop_mode(str(data.get("crop", "none"))),
        )


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of one grayscale frame to ``size x size`` (FFmpeg's swscale)."""
    if frame.shape == (size, size):
        return frame
    video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="gray")
    return video_frame.reformat(width=size, height=size, interpolation="BILINEAR").to_ndarray()


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    return np.stack([resize_frame(f, size) for f in frames])


def make_clips(
    video: DecodedVideo, spec: InputSpec, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Clips ``(clips, frames_per_clip, size, size)`` uint8.

    Frames are first cropped as ``spec.crop`` says (a no-op for a video already cropped).
    Inference (no ``rng``): ``spec.clips`` deterministic clips from evenly offset starts.
    Training (``rng``): one clip with a random frame from each segment.
    """
    video = crop_frames(video, spec.crop)
    if rng is None:
        indices = clip_indices(video.num_frames, spec.frames_per_clip, spec.clips)
    else:
        indices = segment_indices(video.num_frames, spec.frames_per_clip, rng=rng)[None, :]
    unique, inverse = np.unique(indices, return_inverse=True)  # resize each frame once
    resized = resize_frames(video.frames[unique], spec.size)
    return resized[inverse.reshape(indices.shape)]
