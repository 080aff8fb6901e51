"""The reference: a bare aiohttp handler returning a short text body, run with the same worker
count and event loop as the gateway so that benchmark ratios compare like with like."""
from __future__ import annotations

import argparse
import os
import signal

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def run(port: int) -> None:
    import uvloop

    uvloop.install()
    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, access_log=None, print=None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    pids = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            run(args.port)
            os._exit(0)
        pids.append(pid)

    def stop(*_):
        for p in pids:
            os.kill(p, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in pids:
        try:
            os.wait()
        except ChildProcessError:
            break


if __name__ == "__main__":
    main()
