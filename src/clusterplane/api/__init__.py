"""The HTTP API: thin routers over `services`, with Together-compatible wire shapes."""
