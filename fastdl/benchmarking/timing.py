"""Timing: validate every implementation once, then time them interleaved, median of N.

Each implementation is called once untimed and its result checked (a fast wrong kernel
must not look good); that call is also the warm-up. Then each sample times ``number``
back-to-back calls (``number`` chosen so a sample lasts about ``target_s``, like
``timeit``'s autorange), and the rounds interleave the implementations, rotating their
order, so a burst of load from elsewhere on the machine hits all of them alike. The
reported time is the median sample; the minimum is kept too.
"""

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional


class ValidationError(AssertionError):
    """An implementation returned a wrong result: it is reported, never timed."""


@dataclass
class Impl:
    """One implementation of a case: fastdl's or a peer's.

    ``fn`` takes no arguments; ``check(result)`` raises (AssertionError or ValueError)
    when the result is wrong. ``metric(result)`` may return extra numbers to record
    (e.g. accuracy). ``per_run_check``: the timed calls are themselves checked instead
    of a separate validation call (for whole fits, too slow to run twice).
    ``validate()``: replaces the call-and-check when the result is a side effect (an
    in-place optimizer step, a training step that must lower the loss); it raises when
    the implementation is wrong.
    """

    name: str
    fn: Callable[[], Any]
    check: Optional[Callable[[Any], None]] = None
    metric: Optional[Callable[[Any], Dict[str, float]]] = None
    per_run_check: bool = False
    validate: Optional[Callable[[], None]] = None


@dataclass
class Timing:
    median_s: float
    min_s: float
    samples: List[float]
    number: int
    metrics: Dict[str, float] = field(default_factory=dict)


def _short(e):
    """An assertion message in one line: numpy's assert_allclose report without the arrays."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    keep = []
    for ln in lines:
        if ln.startswith(("ACTUAL", "DESIRED", "x:", "y:", "First ", "[")):
            if ln.startswith(("ACTUAL", "DESIRED", "x:", "y:")):
                break
            continue
        keep.append(ln)
    return "; ".join(keep) or type(e).__name__


def _check(impl, result):
    if impl.check is None:
        return
    try:
        impl.check(result)
    except (AssertionError, ValueError) as e:
        raise ValidationError(f"{impl.name}: {_short(e)}") from e


def validate(impl):
    """Runs the implementation once and checks its result. Returns its metrics."""
    if impl.validate is not None:
        try:
            impl.validate()
        except (AssertionError, ValueError) as e:
            raise ValidationError(f"{impl.name}: {_short(e)}") from e
        return {}
    if impl.per_run_check:
        return {}
    result = impl.fn()
    _check(impl, result)
    return dict(impl.metric(result)) if impl.metric else {}


def _calibrate(fn, target_s, max_number, clock):
    """Calls per sample: grows 1, 2, 5, 10, 20, ... until a batch lasts target_s (timeit's
    autorange), so one descheduled call cannot fix the count by itself."""
    number = 1
    while True:
        t0 = clock()
        for _ in range(number):
            fn()
        dt = clock() - t0
        if dt >= target_s or number >= max_number:
            return min(number, max_number)
        # jump close to the target, at most 10x per step
        guess = int(math.ceil(number * target_s / max(dt, 1e-9)))
        number = min(max_number, max(number + 1, min(guess, 10 * number)))


def time_interleaved(impls, rounds, target_s=0.02, max_number=1000, clock=time.perf_counter,
                     budget_s=None, min_rounds=3, failures=None):
    """Times already-validated implementations, interleaved; returns {name: Timing}.

    ``rounds`` samples per implementation, fewer (but at least ``min_rounds``) when the
    case has used up ``budget_s`` seconds — a heavily loaded machine must not stretch the
    run without end. A failing per-run check raises ValidationError naming the
    implementation, or, when a ``failures`` dict is given, is recorded there (name ->
    message) and that implementation drops out while the others go on.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    start = clock()
    numbers = {}
    for impl in impls:
        numbers[impl.name] = 1 if impl.per_run_check else _calibrate(impl.fn, target_s, max_number, clock)
    samples: dict[str, list] = {impl.name: [] for impl in impls}
    metrics: dict[str, list] = {impl.name: [] for impl in impls}
    for r in range(rounds):
        k = r % len(impls)
        for impl in impls[k:] + impls[:k]:  # rotate who goes first
            if failures and impl.name in failures:
                continue
            n = numbers[impl.name]
            t0 = clock()
            for _ in range(n):
                result = impl.fn()
            samples[impl.name].append((clock() - t0) / n)
            if impl.per_run_check:
                try:
                    _check(impl, result)
                except ValidationError as e:
                    if failures is None:
                        raise
                    failures[impl.name] = str(e)
                    continue
                if impl.metric:
                    metrics[impl.name].append(impl.metric(result))
        if budget_s is not None and r + 1 >= min_rounds and clock() - start > budget_s:
            break
    out = {}
    for impl in impls:
        if failures and impl.name in failures:
            continue
        s = samples[impl.name]
        m = {}
        if metrics[impl.name]:  # median of each metric over the runs
            for key in metrics[impl.name][0]:
                m[key] = statistics.median(d[key] for d in metrics[impl.name])
        out[impl.name] = Timing(statistics.median(s), min(s), s, numbers[impl.name], m)
    return out
