"""One start-up note of what a registry is not protected against (docs/operations.md)."""

from __future__ import annotations

import logging

from expert_service.registry.signing import SignaturePolicy

logger = logging.getLogger(__name__)


def warn_unprotected(registry: object) -> None:
    """Log the registry's signature policy, and a WARNING for each protection that is off:
    no signing key (whoever can write the store can replace a model), no durable copy of a
    Redis registry (a Redis that loses its data cannot be restored)."""
    signatures = getattr(registry, "signatures", None)
    if isinstance(signatures, SignaturePolicy):
        logger.info("expert registry %r: %s", registry, signatures.describe())
        if signatures.signer is None:
            logger.warning(
                "expert registry versions are not signed (no "
                "LUS_EXPERT_REGISTRY_SIGNING_KEY_FILE): whoever can write the registry can "
                "replace a model%s",
                "; unsigned versions are refused (LUS_EXPERT_REGISTRY_SIGNATURES=require)"
                if signatures.mode == "require"
                else "",
            )
    if hasattr(registry, "durable") and registry.durable is None:
        logger.warning(
            "the Redis expert registry keeps no durable copy (LUS_EXPERT_REGISTRY_DURABLE_DIR): "
            "if Redis loses its data, its experts cannot be restored"
        )
