"""One asyncio process answering `GET /health` with 200 on many loopback ports (for benchmarks)."""

from __future__ import annotations

import argparse
import asyncio

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(ports: int, ready_file: str) -> None:
    servers = [await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096) for _ in range(ports)]
    with open(ready_file, "w") as fh:
        fh.write("\n".join(str(s.sockets[0].getsockname()[1]) for s in servers))
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=50)
    parser.add_argument("--ready-file", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.ports, args.ready_file))
