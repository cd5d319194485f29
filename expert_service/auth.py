"""Bearer-token authentication of admin calls and the rule that a team changes only its tasks."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from lus.errors import PermissionDenied, Unauthenticated

AUTHORIZATION = "authorization"


class TeamTokens:
    """Maps bearer tokens to teams.

    Args:
        tokens: Team name -> token. Empty turns every admin call away (UNAUTHENTICATED).
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = [(team, token.encode()) for team, token in tokens.items() if token]

    def team(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
        """The team whose token is in the call's ``authorization: Bearer <token>`` metadata.

        Raises:
            Unauthenticated: No such metadata, or a token this server does not know.
        """
        if not self._tokens:
            raise Unauthenticated(
                "admin calls are disabled on this server: no team tokens are configured "
                "(LUS_EXPERT_ADMIN_TOKENS)"
            )
        values = [v for k, v in metadata or () if k.lower() == AUTHORIZATION]
        header = values[0] if values else ""
        text = header.decode("latin-1") if isinstance(header, bytes) else header
        scheme, _, token = text.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("admin calls need metadata 'authorization: Bearer <team token>'")
        given = token.strip().encode()
        # Compare against every token, always: the time taken says nothing about which matched.
        matches = [team for team, known in self._tokens if hmac.compare_digest(given, known)]
        if not matches:
            raise Unauthenticated("the bearer token is not known here; ask ops for your team's")
        return matches[0]

    @staticmethod
    def authorize(team: str, task: str, owner: str) -> None:
        """Raise ``PermissionDenied`` unless ``team`` may change ``task`` (owned by ``owner``)."""
        if owner and owner != team:
            raise PermissionDenied(
                f"task {task!r} belongs to team {owner!r}; team {team!r} may change only "
                "its own tasks"
            )
