#!/usr/bin/python3
"""bench-alert-smtp.py — a minimal SMTP sink for scripts/bench-alert.sh: it timestamps every
accepted message.

For each message it appends one line to --out, flushed at once:

    TIME_NS <TAB> CONN <TAB> NTH <TAB> SUBJECT

TIME_NS is time.time_ns() (CLOCK_REALTIME) taken first thing in the DATA handler, i.e. once the
whole message has arrived and right before the server answers "250" (the moment the message is
accepted); CONN numbers the SMTP connections (1, 2, ...) and NTH the messages within one
connection (1 = the first one on a fresh connection); SUBJECT is the decoded Subject header on
one line. Plain SMTP only (no TLS, no AUTH): a benchmark on loopback.

With --save-dir DIR, the Nth message this sink accepted (from 1: the Nth line it appended to
--out) is also written whole, as received, to DIR/N.eml, before its line is appended (a line
seen means its file is complete); scripts/bench-scale.sh reads the agents named in the bodies
from there.

Usage: /usr/bin/python3 scripts/bench-alert-smtp.py --port PORT --out FILE --pid-file FILE
           [--host 127.0.0.1] [--exit-with-parent] [--save-dir DIR]

Writes its pid to --pid-file once it listens (and removes it on exit); exits on SIGTERM/SIGINT,
and with --exit-with-parent also when the process that started it is gone. Needs Debian's
python3-aiosmtpd: run it with /usr/bin/python3.
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import os
import signal
import sys
import time

try:
    from aiosmtpd.smtp import SMTP
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        f"bench-alert-smtp: cannot import aiosmtpd ({exc}); install python3-aiosmtpd and run "
        "this script with /usr/bin/python3\n"
    )
    sys.exit(2)


def one_line(text):
    return " ".join(str(text).split())


class Handler:
    def __init__(self, out, save_dir=None):
        self.out = out
        self.conns = itertools.count(1)
        self.save_dir = save_dir
        self.saved = itertools.count(1)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Called once per EHLO, i.e. once per connection for lettre: number the connection.
        session.bench_conn = next(self.conns)
        session.bench_nth = 0
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        t = time.time_ns()
        if not hasattr(session, "bench_conn"):  # HELO instead of EHLO
            session.bench_conn = next(self.conns)
            session.bench_nth = 0
        session.bench_nth += 1
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        try:
            msg = email.message_from_bytes(content, policy=email.policy.default)
            subject = one_line(msg.get("subject", ""))
        except Exception as exc:  # a malformed message must not kill the sink
            subject = f"(undecodable subject: {exc})"
        if self.save_dir is not None:
            path = os.path.join(self.save_dir, f"{next(self.saved)}.eml")
            with open(path + ".tmp", "wb") as f:
                f.write(content)
            os.replace(path + ".tmp", path)
        self.out.write(f"{t}\t{session.bench_conn}\t{session.bench_nth}\t{subject}\n")
        self.out.flush()
        return "250 OK"


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with open(args.out, "a", encoding="utf-8") as out:
        handler = Handler(out, args.save_dir)
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="bench-alert-smtp.localhost", timeout=60),
            host=args.host,
            port=args.port,
            reuse_address=True,
        )
        tmp = args.pid_file + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, args.pid_file)

        async def watch_parent():
            parent = os.getppid()
            while os.getppid() == parent:
                await asyncio.sleep(0.5)
            stop.set()

        watcher = loop.create_task(watch_parent()) if args.exit_with_parent else None
        try:
            await stop.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            server.close()
            try:
                os.remove(args.pid_file)
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--pid-file", required=True)
    p.add_argument("--exit-with-parent", action="store_true")
    p.add_argument("--save-dir", help="also write each message to SAVE_DIR/N.eml")
    args = p.parse_args()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
