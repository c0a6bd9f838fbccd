"""Ctrl-C at step boundaries: a training step is all or nothing.

Python raises KeyboardInterrupt between any two bytecodes of the main thread. Inside a
step that updates weights as its backward pass goes (``optimizer_step="in_backward"``),
that would leave some layers stepped and others not. ``interrupts_deferred()`` holds
SIGINT back for a block: the first Ctrl-C is remembered and raised as KeyboardInterrupt
when the block ends (``fit`` also calls ``check()`` after every step); a second Ctrl-C
while one is pending raises at once, for a user who insists. Only the main thread, and
only while SIGINT has Python's default handler: a program's own handler is left alone.
"""

import signal
import threading

__all__ = ["interrupts_deferred"]


class _Deferral:
    depth = 0  # nesting: fit defers for the whole run, a step inside it again
    pending = False
    active = False


_state = _Deferral()


def _handler(signum, frame):
    if _state.pending:
        raise KeyboardInterrupt
    _state.pending = True


class interrupts_deferred:
    """Context manager: SIGINT inside the block raises KeyboardInterrupt at its end."""

    def __enter__(self):
        if _state.depth == 0:
            _state.active = (threading.current_thread() is threading.main_thread()
                             and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
            if _state.active:
                _state.pending = False
                signal.signal(signal.SIGINT, _handler)
        _state.depth += 1
        return self

    @staticmethod
    def check():
        """Raises the pending KeyboardInterrupt now (a step boundary)."""
        if _state.pending:
            _state.pending = False
            raise KeyboardInterrupt

    def __exit__(self, exc_type, exc, tb):
        _state.depth -= 1
        if _state.depth == 0 and _state.active:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            _state.active = False
            if _state.pending:
                _state.pending = False
                if exc_type is None:
                    raise KeyboardInterrupt
        return False
