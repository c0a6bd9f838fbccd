"""Ctrl-C at step boundaries: a training step is all or nothing.

Python raises KeyboardInterrupt between any two bytecodes of the main thread. Inside a
step that would leave some layers updated and others not (the update inside the backward
kernels), or the parameters updated and the step counters not. So, once the process
trains, fastdl's own SIGINT handler replaces Python's default one -- only where the
default one is installed; a program's own handler is left alone. Outside a step it does
what the default does (raise KeyboardInterrupt); inside one it remembers the signal and
the step raises KeyboardInterrupt when it ends. A second Ctrl-C while one is pending
raises at once, for a user who insists.

``fit`` holds a step open for its whole run and calls ``check()`` after every step; a
bare ``train_step`` is one step. Only steps run by the main thread are deferred (Python
delivers signals to it alone). The cost per step is a thread-id comparison and two
counter updates, not a change of handler.
"""

import signal
import threading

__all__ = ["step", "check", "install"]


class _State:
    installed = False
    depth = 0  # steps open in the main thread (fit holds one for its run)
    pending = False


STATE = _State()
_MAIN = threading.main_thread().ident


def _handler(signum, frame):
    if STATE.depth and not STATE.pending:
        STATE.pending = True
        return
    STATE.pending = False
    raise KeyboardInterrupt


def install():
    """Installs the deferring handler, once, where Python's default one is in place."""
    if STATE.installed or threading.get_ident() != _MAIN:
        return
    STATE.installed = True
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)


def enter():
    """Opens a step; returns whether it counts (the main thread's)."""
    if threading.get_ident() != _MAIN:
        return False
    if not STATE.installed:
        install()
    STATE.depth += 1
    return True


def leave(counted, raise_pending=True):
    """Closes a step opened by enter(); raises the Ctrl-C that came during it, if this
    closes the outermost one and raise_pending."""
    if not counted:
        return
    STATE.depth -= 1
    if STATE.depth == 0 and STATE.pending and raise_pending:
        STATE.pending = False
        raise KeyboardInterrupt


def check():
    """Raises a pending Ctrl-C now (fit, between two steps)."""
    if STATE.pending:
        STATE.pending = False
        raise KeyboardInterrupt


class step:
    """Context manager form of enter/leave."""

    def __enter__(self):
        self.counted = enter()
        return self

    check = staticmethod(check)

    def __exit__(self, exc_type, exc, tb):
        leave(self.counted, raise_pending=exc_type is None)
        return False
