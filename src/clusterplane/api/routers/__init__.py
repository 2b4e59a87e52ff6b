"""HTTP routers, one module per resource; each handler is thin over `services`."""
