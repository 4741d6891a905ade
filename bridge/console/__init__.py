"""The console: server-rendered pages at ``/ui`` over the API's own services, live through SSE."""
