"""What the public port answers: which versions, and whether vectors are looked up by hash.

The public ExpertService identifies no caller. Two of its answers gave away more than a
prediction (issue 16): any (task, version) could be asked for, rolled-back and staging ones
included, and cycling through more pairs than the model cache holds reloaded an ONNX session
on every call; and Predict by ``video_hash`` answered for any stored study (NOT_FOUND otherwise,
an oracle of who was scanned) with contributions that gave back every stored value. So by
default only versions an alias routes to are answered, and a lookup by hash answers a caller
from its own uploads only: one identified by its client certificate (mutual TLS) reads the
vectors the biomarker tier recorded under that identity (``lus.feature_store`` owner records;
another caller's vector and a missing one get the same NOT_FOUND), with contributions, since
the values are its own. An anonymous caller gets one refusal for every hash, before any lookup,
unless ``LUS_EXPERT_PUBLIC_VIDEO_HASH`` opens lookups of any stored vector, and then never with
contributions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from expert_service.answers import MatrixQuery, PredictQuery
from expert_service.limits import check_task
from lus.errors import InvalidInput, NotFound

HASH_OFF = (
    "Predict by video_hash needs a client certificate (mutual TLS) here, and answers from that "
    "caller's own uploads (setting LUS_EXPERT_PUBLIC_VIDEO_HASH): send the biomarker vector "
    "instead (the biomarker tier returns it with its analysis)"
)


@dataclass(frozen=True)
class PublicAccess:
    """What the public port answers.

    Attributes:
        unaliased_versions: Answer versions no alias routes to (``LUS_EXPERT_PUBLIC_UNALIASED_
            VERSIONS``).
        video_hash: Look vectors up by video hash (``LUS_EXPERT_PUBLIC_VIDEO_HASH``).
    """

    unaliased_versions: bool = False
    video_hash: bool = False


RoutedVersions = Callable[[str], frozenset[int]]
"""``task -> versions an alias routes to`` (``ExpertPredictor.routed_versions``)."""


def check_version(access: PublicAccess, routed: RoutedVersions, task: str, version: int) -> None:
    """Refuse an explicit ``version`` no alias routes to, unless ``access`` allows any."""
    if version <= 0 or access.unaliased_versions:
        return
    served = routed(check_task(task))
    if version in served:
        return
    listed = ", ".join(map(str, sorted(served))) or "none"
    raise NotFound(
        f"expert {task} v{version} is not served on this port; versions: {listed} (those an "
        "alias points to: ask with version 0 and alias production or staging; setting "
        "LUS_EXPERT_PUBLIC_UNALIASED_VERSIONS)"
    )


def admit_query(
    access: PublicAccess, routed: RoutedVersions, query: PredictQuery, caller: str = ""
) -> PredictQuery:
    """``query`` as the public port answers it for ``caller`` (a certificate identity, ""
    anonymous): refused (see the module) or, by hash, scoped to what the caller may read."""
    check_version(access, routed, query.task, query.version)
    if not query.video_hash:
        return query
    if caller:
        return replace(query, reader=caller)
    if not access.video_hash:
        raise InvalidInput(HASH_OFF)
    return replace(query, max_contributions=0, reader=None)


def admit_matrix(access: PublicAccess, routed: RoutedVersions, query: MatrixQuery) -> MatrixQuery:
    """``query`` if its version may be answered here (matrices carry no hashes)."""
    check_version(access, routed, query.task, query.version)
    return query
