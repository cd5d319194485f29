"""What one decode may cost, and a server-wide budget of decoded bytes across requests.

Two different refusals, so a caller knows whether to retry:

- :class:`DecodeLimits` is per request. A file beyond it (too many frames, frames too large, too
  many pixels in all, or more bytes held at once than one request may hold) is refused with
  :class:`~lus.errors.InvalidInput` (INVALID_ARGUMENT): it would be refused on an idle server
  too, so retrying is pointless.
- :class:`DecodeBudget` is per server. When the requests decoding right now hold so much that
  this one does not fit, it is refused with :class:`~lus.errors.Overloaded`
  (RESOURCE_EXHAUSTED): a retry a moment later may succeed.

Both are checked from the header, before a frame is decoded, and again while decoding when a
file turns out to differ from what its header says.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType

from lus.errors import InvalidInput, Overloaded

MiB = 1024 * 1024
GiB = 1024 * MiB

MAX_FRAMES = 5000
"""Frames a video may have; longer videos are refused rather than exhaust memory or time."""

MAX_FRAME_PIXELS = 4096 * 4096
"""Pixels one frame may have."""


@dataclass(frozen=True)
class DecodeLimits:
    """Per-request decode limits (defaults fit the paper's input and real ultrasound exports).

    Attributes:
        max_frames: Frames a video may have (counted from the container's packets or the DICOM
            Number of Frames). 5,000 is nearly 3 minutes at 30 fps.
        max_frame_pixels: Pixels of one frame (for a GIF: of its logical screen, the canvas
            every frame is drawn on). 4096 x 4096.
        max_video_pixels: Frames x height x width: the picture the file claims to hold, and a
            bound on the decoding work for formats that must be decoded frame after frame.
            Default 5,000 frames of 1920 x 1080 (about 10.4 G pixels). A 5,000 x 4096 x 4096
            DICOM header or a GIF of 5,000 frames on a 4096 x 4096 canvas is refused here.
        max_request_bytes: Decoded bytes one request may hold at once: the frames kept for the
            clips, the frames in the decoders, and the clips. Default 1 GiB; a 1080p video
            needs about 0.1-0.3 GiB, depending on the threads and whether the crop is searched
            for in the pixels.
        threads: Frames decoded in parallel for one DICOM file (each frame is compressed on its
            own), and FFmpeg's decoder threads for a video. Fewer are used when the bytes of
            more would not fit ``max_request_bytes``.
        reduce_jpeg2000: Decode JPEG 2000 DICOM frames at the smallest wavelet resolution
            whose short side still holds the model's input size (``lus.video.jpeg2000``;
            about 12x faster for 1080x1080 frames and a 224 px input). The clips then differ
            slightly from a full-size decode's (a wavelet low-pass instead of the resize's
            filter). False: full size, as every other format.
    """

    max_frames: int = MAX_FRAMES
    max_frame_pixels: int = MAX_FRAME_PIXELS
    max_video_pixels: int = 5000 * 1920 * 1080
    max_request_bytes: int = 1 * GiB
    threads: int = 4
    reduce_jpeg2000: bool = True

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_frame_pixels", "max_video_pixels", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"DecodeLimits.{name} must be at least 1")
        if self.threads < 1:
            raise ValueError("DecodeLimits.threads must be at least 1")

    def check_geometry(self, frames: int, height: int, width: int, *, what: str) -> None:
        """Refuse a video whose frame count or size exceeds the limits.

        Raises:
            InvalidInput: naming the numbers and the limit exceeded.
        """
        if frames > self.max_frames:
            raise InvalidInput(
                f"{what} has {frames} frames, more than the limit of {self.max_frames}; "
                "send a shorter clip"
            )
        pixels = height * width
        if pixels > self.max_frame_pixels:
            raise InvalidInput(
                f"{what} has frames of {width}x{height} ({pixels} pixels), more than the limit "
                f"of {self.max_frame_pixels} pixels; send a smaller export"
            )
        total = frames * pixels
        if total > self.max_video_pixels:
            raise InvalidInput(
                f"{what} holds {frames} frames of {width}x{height} = {total} pixels, more than "
                f"the limit of {self.max_video_pixels}; send a shorter or smaller clip"
            )


@dataclass(frozen=True)
class MemoryEstimate:
    """Decoded bytes a request will hold at most: ``fixed + threads * per_thread``.

    ``fixed`` is what the clips need whatever the parallelism (kept frames, clips, frames held
    to find the crop or the gray window); ``per_thread`` what one frame in flight costs (the
    decoder's buffers and the conversions of one frame).
    """

    fixed: int
    per_thread: int

    def total(self, threads: int) -> int:
        return self.fixed + threads * self.per_thread

    def threads_within(self, limit: int, wanted: int) -> int:
        """The most threads (up to ``wanted``) whose total fits ``limit``; 0 if none does."""
        if self.per_thread <= 0:
            return wanted if self.fixed <= limit else 0
        return max(0, min(wanted, (limit - self.fixed) // self.per_thread))


class DecodeBudget:
    """A server-wide pool of decoded bytes shared by concurrent decodes; thread-safe.

    A decode reserves its estimate before it allocates and gives it back when it is done, so
    the decoders of one server together never hold more than ``capacity_bytes``. A request that
    does not fit now is refused at once (:class:`~lus.errors.Overloaded`, retry later) rather
    than queued: the caller's retry with backoff already spreads the load, and a queue here
    would hold the uploaded bytes of every waiting request.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 1:
            raise ValueError("a decode budget needs a capacity of at least 1 byte")
        self.capacity_bytes = capacity_bytes
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use_bytes(self) -> int:
        """Bytes reserved by decodes running now (for a metrics gauge)."""
        with self._lock:
            return self._in_use

    def reserve(self, wanted: int, *, at_least: int | None = None) -> Reservation:
        """Reserve ``wanted`` bytes, or as many as are free down to ``at_least``.

        Raises:
            InvalidInput: even ``at_least`` exceeds the whole capacity (it never fits).
            Overloaded: it does not fit next to the decodes running now.
        """
        need = wanted if at_least is None else min(at_least, wanted)
        if need > self.capacity_bytes:
            raise InvalidInput(
                f"decoding this file needs {need} bytes at once, more than this server's whole "
                f"decode budget of {self.capacity_bytes} bytes; send a shorter or smaller clip"
            )
        with self._lock:
            free = self.capacity_bytes - self._in_use
            if need > free:
                raise Overloaded(
                    f"decoding this file needs {need} bytes; {self._in_use} of the server's "
                    f"{self.capacity_bytes} decode bytes are in use by other requests; "
                    "retry shortly"
                )
            granted = min(wanted, free)
            self._in_use += granted
        return Reservation(self, granted)

    def _change(self, delta: int) -> None:
        with self._lock:
            self._in_use += delta

    def _grow(self, current: int, wanted: int) -> None:
        """Raise ``current`` to ``wanted`` bytes, or refuse as :meth:`reserve` does."""
        if wanted > self.capacity_bytes:
            raise InvalidInput(
                f"decoding this file needs {wanted} bytes at once, more than this server's "
                f"whole decode budget of {self.capacity_bytes} bytes; send a smaller clip"
            )
        with self._lock:
            if wanted - current > self.capacity_bytes - self._in_use:
                raise Overloaded(
                    f"decoding this file needs {wanted} bytes; {self._in_use} of the server's "
                    f"{self.capacity_bytes} decode bytes are in use; retry shortly"
                )
            self._in_use += wanted - current


class Reservation:
    """Bytes held in a :class:`DecodeBudget` until :meth:`release` (or the ``with`` block ends).

    A reservation made without a budget (``Reservation(None, n)``) only records the size, so
    the decode code is the same with and without a server-wide budget.
    """

    def __init__(self, budget: DecodeBudget | None, nbytes: int) -> None:
        self._budget = budget
        self.nbytes = nbytes
        self._released = False

    def grow_to(self, nbytes: int) -> None:
        """Hold at least ``nbytes`` (a file turned out larger than its header said).

        Raises:
            InvalidInput, Overloaded: as :meth:`DecodeBudget.reserve`.
        """
        if nbytes <= self.nbytes or self._released:
            return
        if self._budget is not None:
            self._budget._grow(self.nbytes, nbytes)
        self.nbytes = nbytes

    def release(self) -> None:
        if not self._released:
            self._released = True
            if self._budget is not None:
                self._budget._change(-self.nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def reserve(
    estimate: MemoryEstimate, limits: DecodeLimits, budget: DecodeBudget | None, *, what: str
) -> tuple[Reservation, int]:
    """Check ``estimate`` against the request limit, reserve it, and pick the thread count.

    More threads are used only when their bytes fit both the request limit and what the
    server budget has free; one thread must fit, else the file is refused.

    Returns:
        The reservation (release it when done) and the number of threads it pays for.

    Raises:
        InvalidInput: even one thread exceeds ``limits.max_request_bytes`` or the budget.
        Overloaded: the budget has too little free right now.
    """
    threads = estimate.threads_within(limits.max_request_bytes, limits.threads)
    if threads < 1:
        raise InvalidInput(
            f"decoding {what} would hold {estimate.total(1)} bytes at once, more than the "
            f"limit of {limits.max_request_bytes} bytes per request; send a shorter or "
            "smaller clip"
        )
    if budget is None:
        return Reservation(None, estimate.total(threads)), threads
    reservation = budget.reserve(estimate.total(threads), at_least=estimate.total(1))
    return reservation, max(1, estimate.threads_within(reservation.nbytes, threads))


__all__ = [
    "MAX_FRAMES",
    "MAX_FRAME_PIXELS",
    "DecodeBudget",
    "DecodeLimits",
    "GiB",
    "MemoryEstimate",
    "MiB",
    "Reservation",
    "reserve",
]
