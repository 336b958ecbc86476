#!/usr/bin/env python3
"""Run a few long-lived commands as one service and stop all of them, with every process they started.

`make run` starts Dagster's code server, webserver and daemon and the HTTP API. A plain shell recipe cannot stop
them promptly: make forwards SIGTERM to its recipe only, a shell runs its trap only after its foreground command
ends, and Dagster's processes have children of their own (the code server starts a run worker per run). So each
command here runs in its own process group, which its descendants inherit, and stopping means: SIGTERM to every
group, then SIGKILL to whatever is left of them after the grace period.

Everything stops when this process gets SIGINT (Ctrl-C), SIGTERM or SIGHUP, or when any command ends on its own.
On Linux this process is also the child subreaper of the commands' descendants, so a process whose parent died
is reaped here and a finished group is really empty. The exit status is that of the first command that ended
on its own (1 when a signal killed it), else 0: a stop that was asked for is a clean end.

With `--first-ready HOST:PORT` the first command is a server the others connect to (Dagster's code server): they
start once it accepts connections, so they never log that it cannot be reached.

Standard library only, independent of the project:
    supervise.py [--grace S] [--first-ready HOST:PORT] 'COMMAND ARGS' ['COMMAND ARGS' ...]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

POLL_SECONDS = 0.1
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to us (not to init), so we reap them and see their groups empty."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def accepts_connections(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1.0):
            return True
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_groups(groups: list[int], signum: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Supervisor:
    """The commands started so far, how those that ended did, and whether a stop was asked for."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.asked: list[int] = []
        self.running: dict[int, str] = {}  # pid -> program
        self.ended: list[tuple[str, int]] = []  # (program, exit code) in the order they ended
        self.processes: list[subprocess.Popen] = []  # kept, so that no Popen reaps its child behind reap()'s back

    def on_signal(self, signum: int, _frame: object) -> None:
        self.asked.append(signum)

    def start(self, command: str) -> None:
        argv = shlex.split(command)
        self.processes.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True))
        self.running[self.processes[-1].pid] = argv[0]

    @property
    def groups(self) -> list[int]:
        """Each command leads a new session, so its pid is its process group's id."""
        return [process.pid for process in self.processes]

    def reap(self) -> None:
        """Collect every exited child (ours or an orphan); record how each command we started ended."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.running:
                self.ended.append((self.running.pop(pid), os.waitstatus_to_exitcode(status)))

    def wait(self, until: Callable[[], bool] | None = None) -> bool:
        """Wait until a stop is asked for or a command ends (False), or until `until()` holds (True)."""
        while True:
            self.reap()
            if self.asked or self.ended:
                return False
            if until is not None and until():
                return True
            time.sleep(POLL_SECONDS)

    def stop(self) -> list[int]:
        """SIGTERM every group, wait up to the grace period for all to empty, SIGKILL the rest; returns the groups
        that still had processes after SIGKILL (none, unless a process is stuck in the kernel)."""
        signal_groups(self.groups, signal.SIGTERM)
        if not self.wait_empty(self.grace):
            signal_groups([g for g in self.groups if group_alive(g)], signal.SIGKILL)
            self.wait_empty(2.0)
        return [g for g in self.groups if group_alive(g)]

    def wait_empty(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            self.reap()  # zombies still count as members of their group
            if not any(group_alive(g) for g in self.groups):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grace", type=float, default=6.0,
                        help="seconds between SIGTERM and SIGKILL when stopping (default 6)")
    parser.add_argument("--first-ready", metavar="HOST:PORT",
                        help="start the other commands once the first one accepts connections at HOST:PORT")
    parser.add_argument("commands", nargs="+", help="each command as one shell-quoted string")
    args = parser.parse_args(argv)

    supervisor = Supervisor(args.grace)
    # Caught before any command starts, so every command starts with these signals at their defaults, even when
    # `make run` was started with SIGINT ignored (in the background of a script): Dagster's processes handle
    # SIGTERM as they handle SIGINT, and would ignore it too.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    become_subreaper()
    try:
        first, *others = args.commands
        supervisor.start(first)
        if args.first_ready:
            host, _, port = args.first_ready.rpartition(":")
            if not supervisor.wait(until=lambda: accepts_connections((host, int(port)))):
                others = []
        for command in others:
            supervisor.start(command)
        supervisor.wait()
    except OSError as error:  # a command that cannot be started
        print(f"supervise: {error}", file=sys.stderr, flush=True)
        supervisor.ended.append((str(error.filename), 127))
    finally:
        started = time.monotonic()
        stuck = supervisor.stop()
        if supervisor.asked:
            print(f"supervise: stopped in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        if stuck:
            print(f"supervise: process groups {stuck} did not stop", file=sys.stderr, flush=True)
    if supervisor.asked:
        return 1 if stuck else 0
    name, code = supervisor.ended[0]
    print(f"supervise: {name} ended with status {code}; stopped the others", file=sys.stderr, flush=True)
    return code if code > 0 else (1 if code < 0 else 0)


if __name__ == "__main__":
    sys.exit(main())
