"""HTTP API: routers under /api/v1 plus /healthz and /readyz."""
