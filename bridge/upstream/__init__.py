"""The MPC API as the bridge sees it: two read endpoints and a closed set of outcomes."""

from bridge.upstream.mpc import MpcClient, MpcResponse, StaticTokens, TokenSource, UpstreamClient, user_agent

__all__ = ["MpcClient", "MpcResponse", "StaticTokens", "TokenSource", "UpstreamClient", "user_agent"]
