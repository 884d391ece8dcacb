"""`postline` as a separate process, the way users run it."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def postline_command() -> list[str]:
    return [sys.executable, "-m", "api.cli"]


# The MTA role asks this nameserver, where nobody answers: no test depends on the machine's DNS.
NO_DNS = {"POSTLINE_DNS_NAMESERVERS": "127.0.0.1:9"}


def process_env() -> dict[str, str]:
    return {**os.environ, **NO_DNS, "PYTHONPATH": str(ROOT)}


def postline(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a `postline` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        env={**process_env(), **(env or {})},
        cwd=cwd or ROOT,
        timeout=120,
    )


class Serve:
    """`postline serve` on ephemeral ports; `.url`, `.smtp_ports`, `.banner`; `.stop()`.

    Senders from any domain are allowed unless the arguments say `--sender-policy`: the tests
    that use this are about other things; the sender policy has tests of its own.
    """

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, log: Path
    ) -> None:
        if "--sender-policy" not in args:
            args = (*args, "--sender-policy", "any")
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "api.cli", "serve", "--http", "127.0.0.1:0", "--smtp", "127.0.0.1:0"),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**process_env(), **(env or {})},
            cwd=cwd or ROOT,
        )
        self.banner: list[str] = []
        self.url = ""
        self.smtp_ports: list[int] = []
        deadline = time.monotonic() + 60
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("Listening on "):
                self.url = line.split()[-1]
                break
            self.banner.append(line.rstrip("\n"))
            if line.strip().startswith("SMTP:"):
                self.smtp_ports.append(int(line.split()[1].rpartition(":")[2]))
        if not self.url:
            self.stop()
            raise RuntimeError(f"postline serve did not start:\n{log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        return self.process.returncode
