"""The SMTP ingest benchmark's tools: Postfix's load generator, a throwaway Postfix, a no-op server.

- `smtp-source` (Debian package `postfix`) sends the load: 16 sessions, 5 KB messages, either
  a new connection per message or (`-d`) reused connections.
- Postfix itself is the peer: an instance with its own configuration and queue directories on a
  loopback port, taking mail from loopback without AUTH and handing it to its `discard`
  transport, so it writes (and fsyncs) every message to its queue before answering 250, as
  Postline commits before it does.
- The no-op peer is aiosmtpd answering 250 to everything (`bench/smtp_noop.py`): the ceiling of
  the protocol engine Postline is built on.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SESSIONS = 16
MESSAGE_BYTES = 5120
SENDER = "bench@example.com"
RECIPIENT = "rcpt@example.net"

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
myhostname = bench.localdomain
mydomain = localdomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = discard:bench
relay_transport = discard:bench
local_transport = discard:bench
alias_maps =
alias_database =
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_connection_rate_limit = 0
"""


def tools_missing() -> str | None:
    """Why the SMTP scenario cannot run here, or None."""
    if shutil.which("smtp-source") is None and not Path("/usr/sbin/smtp-source").exists():
        return "smtp-source is not installed (apt-get install postfix)"
    return None


def smtp_source(port: int, messages: int, *, reuse: bool, recipient: str = RECIPIENT) -> dict:
    """Send `messages` with smtp-source; throughput and any error it printed."""
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    command = [binary, "-s", str(SESSIONS), "-m", str(messages), "-l", str(MESSAGE_BYTES)]
    command += ["-f", SENDER, "-t", recipient]
    if reuse:
        command.append("-d")
    start = time.perf_counter()
    result = subprocess.run(
        [*command, f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=600
    )
    seconds = time.perf_counter() - start
    errors = (result.stdout + result.stderr).strip()
    return {
        "messages": messages,
        "seconds": round(seconds, 3),
        "messages_per_s": round(messages / seconds, 1),
        "ok": result.returncode == 0 and not errors,
        "errors": errors[:500] or None,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Postfix:
    """A throwaway Postfix instance (needs root, as Postfix's master does)."""

    def __init__(self, relay_to: int | None = None) -> None:
        """`relay_to`: a loopback port to relay everything to, instead of discarding it."""
        if os.geteuid() != 0:
            raise RuntimeError("the Postfix peer needs root (postfix start)")
        if shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists():
            raise RuntimeError("postfix is not installed (apt-get install postfix)")
        self.root = Path(tempfile.mkdtemp(prefix="postline-bench-postfix-"))
        self.root.chmod(0o755)  # Postfix's daemons run as the postfix user
        self.port = free_port()
        config = self.root / "conf"
        config.mkdir()
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        shutil.chown(self.root / "data", "postfix")
        main_cf = MAIN_CF.format(root=self.root)
        master_cf = MASTER_CF.format(port=self.port)
        if relay_to is not None:
            main_cf = "\n".join(
                line for line in main_cf.splitlines() if "_transport = discard" not in line
            )
            main_cf += f"\nrelayhost = [127.0.0.1]:{relay_to}\nsmtp_tls_security_level = none\n"
            master_cf += "smtp      unix  -       -       n       -       -       smtp\n"
            master_cf += "relay     unix  -       -       n       -       -       smtp\n"
        (config / "main.cf").write_text(main_cf)
        (config / "master.cf").write_text(master_cf)
        self.config = config
        self._postfix("start")
        deadline = time.monotonic() + 20
        while not _answers(self.port):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postfix did not start listening")
            time.sleep(0.1)

    def _postfix(self, action: str) -> None:
        binary = shutil.which("postfix") or "/usr/sbin/postfix"
        result = subprocess.run(
            [binary, "-c", str(self.config), action], capture_output=True, text=True
        )
        if result.returncode != 0 and action != "stop":
            raise RuntimeError(f"postfix {action} failed: {result.stdout}{result.stderr}")

    def stop(self) -> None:
        self._postfix("stop")
        deadline = time.monotonic() + 20
        while _answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)


class NoopSmtp:
    """`bench/smtp_noop.py` in its own process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "smtp_noop.py"), "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError("the no-op SMTP server did not start")
        self.port = int(line.split()[-1])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class SmtpSink:
    """Postfix's `smtp-sink` on a loopback port, counting the messages it takes."""

    def __init__(self) -> None:
        binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        self.port = free_port()
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [binary, *user, "-c", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._count = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("smtp-sink did not start")
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.process.stdout is not None
        pending = b""
        while chunk := self.process.stdout.read1(65536):
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for line in reversed(lines):
                match = re.search(rb"mesg=(\d+)", line)
                if match:
                    self._count = int(match.group(1))
                    break

    @property
    def messages(self) -> int:
        return self._count

    def wait_for(self, count: int, timeout: float) -> float:
        """Seconds until the sink has taken `count` messages in all (inf on timeout)."""
        start = time.perf_counter()
        while self._count < count:
            if time.perf_counter() - start > timeout:
                return float("inf")
            time.sleep(0.005)
        return time.perf_counter() - start

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
