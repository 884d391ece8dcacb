"""The SMTP benchmark's ceiling: aiosmtpd with a handler that answers 250 and keeps nothing.

    python bench/smtp_noop.py PORT      (0 picks a free port; prints "listening on PORT")

Runs on uvloop, as `postline serve` does, so the two differ only by what Postline does with
the mail.
"""

import asyncio
import sys

import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session


class Noop:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Noop(), hostname="noop.localdomain"), "127.0.0.1", port, backlog=2048
    )
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
