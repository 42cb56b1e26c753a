#!/usr/bin/python3
"""smtp-capture.py — a real SMTP server (aiosmtpd) that captures every message, for tests.

Every accepted message is appended as one JSON line to DIR/messages.jsonl (so messages survive a
restart on the same DIR), and a tiny HTTP JSON API serves them:

    GET /health      -> {"ok": true}
    GET /messages    -> [record, ...]
    DELETE /messages -> clears them

A record: received_at (RFC 3339), mail_from, rcpt_tos (list), subject, from, to, message_id
(decoded header values, "" if absent), body (the text/plain part, "" if none), html (the text/html part or null)
(body and html decoded, with LF line ends), tls (whether the session was encrypted), auth_user
(or null), raw (the whole message as received).

TLS: `none`; `starttls` (STARTTLS offered and required before anything else); `implicit` (TLS
from the first byte, "smtps"). With --auth-user/--auth-password, AUTH PLAIN and LOGIN are offered
(with starttls, only after STARTTLS) and required before MAIL. With --data-size-limit BYTES, a
larger message is refused after DATA with "552 Error: Too much mail data" (aiosmtpd's own check;
without the option its default, 32 MiB, applies).

Holding: `POST /hold` makes every MAIL command wait (each at most 120 s) until `POST /release`;
`GET /hold` -> {"holding": bool, "waiting": n}, the MAIL commands waiting now. A test uses it to
keep a client's send in flight, after the client decided to send and before the message goes
out.

Listens on --host only; logs to stderr; writes its pid to DIR/smtp.pid once both ports listen
(and removes it on exit); exits cleanly on SIGTERM/SIGINT. With --exit-with-parent it also exits
when the process that started it dies (so a killed test run leaves nothing behind).

Needs Debian's python3-aiosmtpd: run it with /usr/bin/python3.
"""

import argparse
import asyncio
import email
import email.policy
import http.server
import json
import logging
import os
import signal
import ssl
import sys
import threading
import warnings
from datetime import datetime, timezone

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        f"smtp-capture: cannot import aiosmtpd ({exc}); install python3-aiosmtpd and run "
        "this script with /usr/bin/python3\n"
    )
    sys.exit(2)

log = logging.getLogger("smtp-capture")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--api-port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth-user")
    p.add_argument("--auth-password")
    p.add_argument("--data-size-limit", type=int)
    p.add_argument("--exit-with-parent", action="store_true")
    args = p.parse_args(argv)
    if args.tls != "none" and not (args.cert and args.key):
        p.error("--tls starttls|implicit needs --cert and --key")
    if (args.auth_user is None) != (args.auth_password is None):
        p.error("--auth-user and --auth-password go together")
    return args


class Store:
    """messages.jsonl, shared by the SMTP handler (event loop) and the HTTP threads."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "messages.jsonl")
        self.lock = threading.Lock()

    def append(self, record):
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def all(self):
        with self.lock:
            try:
                with open(self.path, encoding="utf-8") as f:
                    lines = f.readlines()
            except FileNotFoundError:
                return []
        records = []
        for line in lines:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                log.warning("skipping a corrupt line of %s", self.path)
        return records

    def clear(self):
        with self.lock:
            with open(self.path, "w", encoding="utf-8"):
                pass


def part_text(msg, subtype):
    try:
        part = msg.get_body(preferencelist=(subtype,))
        if part is None:
            return None
        content = part.get_content()
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        return content.replace("\r\n", "\n")
    except Exception as exc:  # a malformed message must not kill the server
        log.warning("cannot decode the text/%s part: %s", subtype, exc)
        return None


def header(msg, name):
    try:
        value = msg.get(name)
    except Exception as exc:
        log.warning("cannot decode header %s: %s", name, exc)
        return ""
    return "" if value is None else str(value)


def as_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


HOLD_MAX_S = 120.0


class Gate:
    """Whether MAIL commands are held (set from the API threads, read on the event loop)."""

    def __init__(self):
        self.released = threading.Event()
        self.released.set()
        self.lock = threading.Lock()
        self.waiting = 0

    def status(self):
        with self.lock:
            return {"holding": not self.released.is_set(), "waiting": self.waiting}

    async def pass_through(self):
        if self.released.is_set():
            return
        with self.lock:
            self.waiting += 1
        log.info("holding a MAIL command")
        try:
            waited = 0.0
            while not self.released.is_set() and waited < HOLD_MAX_S:
                await asyncio.sleep(0.05)
                waited += 0.05
        finally:
            with self.lock:
                self.waiting -= 1
        log.info("MAIL command released after %.2f s", waited)


class CaptureHandler:
    def __init__(self, store, gate):
        self.store = store
        self.gate = gate

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        await self.gate.pass_through()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        msg = email.message_from_bytes(content, policy=email.policy.default)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        auth_user = None
        if session.authenticated:
            auth_user = as_str(session.auth_data)
        record = {
            "received_at": datetime.now(timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "mail_from": as_str(envelope.mail_from),
            "rcpt_tos": [as_str(r) for r in envelope.rcpt_tos],
            "subject": header(msg, "subject"),
            "from": header(msg, "from"),
            "to": header(msg, "to"),
            "message_id": header(msg, "message-id"),
            "body": part_text(msg, "plain") or "",
            "html": part_text(msg, "html"),
            "tls": tls,
            "auth_user": auth_user,
            "raw": content.decode("utf-8", errors="replace"),
        }
        try:
            self.store.append(record)
        except OSError as exc:
            log.error("cannot store a message: %s", exc)
            return "451 4.3.0 Cannot store the message"
        log.info(
            "captured a message from %s to %s (subject %r, tls=%s, auth=%s)",
            record["mail_from"],
            record["rcpt_tos"],
            record["subject"],
            tls,
            auth_user,
        )
        return "250 OK: message captured"


def make_authenticator(user, password):
    def authenticator(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = as_str(auth_data.login)
        given = as_str(auth_data.password)
        if login == user and given == password:
            log.info("AUTH %s accepted for %r", mechanism, login)
            return AuthResult(success=True, auth_data=login)
        log.info("AUTH %s refused for %r", mechanism, login)
        return AuthResult(success=False, handled=False)

    return authenticator


def make_api(store, gate, host, port):
    class Api(http.server.BaseHTTPRequestHandler):
        server_version = "smtp-capture/1"

        def log_message(self, fmt, *fmt_args):
            log.debug("api: " + fmt, *fmt_args)

        def reply(self, status, value):
            body = json.dumps(value, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self.reply(200, {"ok": True})
            elif self.path == "/messages":
                self.reply(200, store.all())
            elif self.path == "/hold":
                self.reply(200, gate.status())
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            if self.path == "/hold":
                gate.released.clear()
                log.info("MAIL commands are held")
                self.reply(200, gate.status())
            elif self.path == "/release":
                gate.released.set()
                log.info("MAIL commands are released")
                self.reply(200, gate.status())
            else:
                self.reply(404, {"error": "not found"})

        def do_DELETE(self):
            if self.path == "/messages":
                store.clear()
                log.info("messages cleared")
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {"error": "not found"})

    httpd = http.server.ThreadingHTTPServer((host, port), Api)
    httpd.daemon_threads = True
    return httpd


def write_pid(directory):
    path = os.path.join(directory, "smtp.pid")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)
    return path


def remove_pid(path):
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.remove(path)
    except OSError:
        pass


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    store = Store(args.dir)
    ctx = None
    if args.tls != "none":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)

    auth = args.auth_user is not None
    smtp_kwargs = dict(
        hostname="smtp-capture.localhost",
        ident="smtp-capture (aiosmtpd)",
        timeout=60,
    )
    if args.data_size_limit is not None:
        smtp_kwargs.update(data_size_limit=args.data_size_limit)
    if auth:
        smtp_kwargs.update(
            authenticator=make_authenticator(args.auth_user, args.auth_password),
            auth_required=True,
            # With STARTTLS, AUTH only after it. Implicit TLS is encrypted from the start (but
            # aiosmtpd only counts STARTTLS); with --tls none, AUTH goes in the clear.
            auth_require_tls=args.tls == "starttls",
        )
    if args.tls == "starttls":
        smtp_kwargs.update(tls_context=ctx, require_starttls=True)

    gate = Gate()
    handler = CaptureHandler(store, gate)
    server = await loop.create_server(
        lambda: SMTP(handler, loop=loop, **smtp_kwargs),
        host=args.host,
        port=args.smtp_port,
        ssl=ctx if args.tls == "implicit" else None,
        ssl_handshake_timeout=10 if args.tls == "implicit" else None,
        reuse_address=True,
    )
    httpd = make_api(store, gate, args.host, args.api_port)
    api_thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="api", daemon=True
    )
    api_thread.start()

    pid_path = write_pid(args.dir)
    log.info(
        "listening: smtp %s:%d (tls=%s, auth=%s), api http://%s:%d, dir %s, pid %d",
        args.host,
        args.smtp_port,
        args.tls,
        "on" if auth else "off",
        args.host,
        args.api_port,
        args.dir,
        os.getpid(),
    )

    async def watch_parent():
        parent = os.getppid()
        while True:
            await asyncio.sleep(0.5)
            if os.getppid() != parent:
                log.warning("parent process %d is gone; exiting", parent)
                stop.set()
                return

    watcher = loop.create_task(watch_parent()) if args.exit_with_parent else None
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        if watcher is not None:
            watcher.cancel()
        server.close()
        httpd.shutdown()
        httpd.server_close()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=2)
        except (asyncio.TimeoutError, Exception):
            pass
        remove_pid(pid_path)
    log.info("stopped")


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aiosmtpd warns about AUTH without STARTTLS: intended here (implicit TLS, or a plain test).
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    os.makedirs(args.dir, exist_ok=True)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
