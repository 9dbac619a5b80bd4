"""Inside one rank process of the local launcher (:mod:`helixlib.runtime.launch`): tie its life to
the launcher's, report to the launcher, and run.

No orphans, whatever kills the launcher (SIGTERM, SIGKILL, a crash):

* with ``forkserver`` a rank is a child of the fork server, not of the launcher, and
  multiprocessing hands every child the launcher's end of the server's liveness pipe; a rank
  holding it keeps the server alive after the launcher is gone, and the server keeps the rank
  alive. A rank closes that copy first (:func:`leave_fork_server`): then a dead launcher ends the
  server (end of file on the pipe), and the server's death ends the rank;
* every rank asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``): the fork
  server with ``forkserver``, the launcher itself with ``fork`` and ``spawn``.

No temporary folder: the file a rank's ``faulthandler`` writes its stacks to is an unnamed
temporary file the launcher opened and passed down as a descriptor (:class:`InheritedFd`), so
nothing is left on disk even when the launcher is killed.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import time
import traceback


class InheritedFd:
    """An open file descriptor that reaches a child process whatever the start method: ``fork``
    inherits the object as it is; ``forkserver`` and ``spawn`` pickle it, and multiprocessing's
    ``DupFd`` (what its own connections travel with) passes the descriptor along."""

    def __init__(self, fd: int):
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction

        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup) -> InheritedFd:
    return InheritedFd(dup.detach())


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def leave_fork_server() -> None:
    """Close this process's copy of the launcher's end of the fork server's liveness pipe (see
    the module docstring); a no-op in a process that has none."""
    from multiprocessing import forkserver

    server = forkserver._forkserver  # the module's singleton; its fields are private but stable since 3.4
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None


def rank_entry(rank_fn, spec, rank: int, world: int, port, outbox, progress, stack: InheritedFd) -> None:
    """Body of one rank process: tie its life to the launcher's, report start, run, report the
    result or the traceback (to ``outbox``, the write end of its pipe to the launcher). ``port``
    is a shared int the launcher sets once its store is open."""
    leave_fork_server()
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches every process; the launcher stops the ranks
    faulthandler.enable(file=stack.fd)  # fatal signals
    faulthandler.register(signal.SIGUSR1, file=stack.fd, all_threads=True)  # the launcher asks "where are you?"
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # every rank is on this machine: gloo listens on loopback only
    outbox.send(("started", rank, os.getpid()))
    try:
        deadline = time.monotonic() + 60
        while port.value == 0:  # the launcher opens the store after forking (see launch_local)
            if time.monotonic() > deadline:
                raise RuntimeError("the launcher's store did not open within 60 s")
            time.sleep(0.005)
        result = rank_fn(spec, rank, world, local_rank=rank, store_port=port.value, progress=progress)
        outbox.send(("done", rank, result))
    except BaseException as exc:  # noqa: BLE001 - everything goes to the launcher
        outbox.send(("error", rank, (type(exc).__name__, traceback.format_exc())))
        sys.exit(1)
