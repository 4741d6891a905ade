"""The MPC API as the bridge sees it: two read endpoints and a closed set of outcomes."""

from bridge.upstream.mpc import (
    ClubCredentials,
    CredentialSource,
    MpcClient,
    MpcResponse,
    StaticTokens,
    UpstreamClient,
    user_agent,
)

__all__ = [
    "ClubCredentials",
    "CredentialSource",
    "MpcClient",
    "MpcResponse",
    "StaticTokens",
    "UpstreamClient",
    "user_agent",
]
