"""The HTTP API: one controller per area under a guarded ``/v1`` router (README, "API")."""
