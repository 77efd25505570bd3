"""Trying again, one way: tenacity, bounded by time or by attempts.

Several parts of the toolkit repeat something until it is good enough or a budget is spent:
``invoke health --wait`` until every check passes; ``invoke up`` while an image pull fails for a
transient reason, and until Traefik routes each service it restarted; ``invoke verify`` until a
pushed log line can be read back, or a new Patroni replica streams. All of them go through
:func:`poll`, so that none hand-rolls a loop of sleeps and deadlines: the caller gives the
budget, the pause (a tenacity wait strategy) and what to say while it waits. Running out of
budget is not an error here: the caller gets the last result and judges it.

tenacity is imported when a poll starts, not with this module: every task imports the
toolkit, and most never poll.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def poll(attempt: Callable[[], T], done: Callable[[T], bool], *, wait: Any, timeout: float | None = None,
         attempts: int | None = None, before_wait: Callable[[T, int, float], None] | None = None) -> T:
    """Call ``attempt`` until ``done(result)``, or until ``timeout`` seconds have passed since the
    first attempt began, or ``attempts`` attempts were made; returns the last result.

    ``wait`` is a tenacity wait strategy (``wait_fixed(0.2)``, ``wait_exponential(...)``).
    ``before_wait(result, attempt_number, seconds)`` runs before each pause (progress lines).
    An exception of ``attempt`` is not retried: it propagates as it was raised.
    """
    from tenacity import (
        RetryError,
        Retrying,
        before_sleep_nothing,
        retry_if_result,
        stop_after_attempt,
        stop_after_delay,
    )

    if timeout is None and attempts is None:
        raise ValueError("poll needs a budget: a timeout, a number of attempts, or both")
    stops = [s for s in (stop_after_delay(timeout) if timeout is not None else None,
                         stop_after_attempt(attempts) if attempts is not None else None) if s is not None]
    stop = stops[0] if len(stops) == 1 else stops[0] | stops[1]

    def announce(state: Any) -> None:
        assert before_wait is not None and state.outcome is not None and state.next_action is not None
        before_wait(state.outcome.result(), state.attempt_number, state.next_action.sleep)

    retrying = Retrying(retry=retry_if_result(lambda result: not done(result)), wait=wait, stop=stop,
                        before_sleep=announce if before_wait is not None else before_sleep_nothing)
    try:
        return retrying(attempt)
    except RetryError as exc:
        return exc.last_attempt.result()
