"""The trivial FastAPI app the server's own floor is measured against (figure 2).

    python -m benchmarks.trivial --port P [--http h11|httptools] [--loop asyncio|uvloop]

One `async` endpoint answering `{"status": "ok"}` at `/healthz`, as the server's own
`/healthz` does: FastAPI's routing, its default middleware and response encoding, and
nothing else. Served by uvicorn with its defaults (one worker, log level `info` with its
access log, as the server writes its own access line), on the HTTP protocol and event
loop given (uvicorn's defaults without its `[standard]` extras are h11 and asyncio).
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.trivial")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http", choices=("h11", "httptools"), default="h11")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        http=args.http,
        loop=args.loop,
    )


if __name__ == "__main__":
    main()
