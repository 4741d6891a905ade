"""The HTTP API (SPEC "HTTP API (v1)"): one controller per area under a guarded ``/v1`` router."""
