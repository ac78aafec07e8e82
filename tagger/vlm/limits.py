"""Request pacing for endpoints: a requests-per-minute and tokens-per-minute limiter, and the
waits between retries.

``RateLimiter`` gives each request a start time that holds both limits exactly:

- **requests per minute**: starts are at least ``60 / rpm`` seconds apart, so any 60-second
  window ``[t, t + 60)`` holds at most ``rpm`` starts, and no burst reaches a server whose own
  limit is enforced per second (as OpenAI's is); the spacing is kept between the times requests
  really go out, not only the planned ones;
- **tokens per minute**: a request starts only when the tokens of the requests started in the
  60 seconds before, plus its own estimate, stay within ``tpm``. Each request reserves an
  estimate (its prompt estimate plus the most tokens its reply may have); when the reply comes
  the reservation becomes the tokens the server reports. The limit is exact when estimates are
  upper bounds.

A server's ``Retry-After`` holds every request back until then (``hold``), not only the one that
got it. ``retry_delay`` is the wait before a retry: the server's ``Retry-After`` when it sent one,
else an exponential backoff with jitter.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: Statuses worth retrying: timeouts, conflicts, rate limits and server errors.
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, *range(520, 530)})
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
RETRY_AFTER_CAP = 600.0


class LimitError(Exception):
    """A request can never fit the limits (its estimate is above the tokens-per-minute limit)."""


@dataclass
class Reservation:
    """One request's place in the limiter: when it may start and the tokens it counts for."""

    start: float
    tokens: float


class RateLimiter:
    """Start times for requests under a requests-per-minute and a tokens-per-minute limit
    (0: no limit). Thread-safe; ``clock`` and ``sleep`` are replaceable for tests."""

    def __init__(
        self,
        rpm: float = 0.0,
        tpm: float = 0.0,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._last_start: float | None = None  # the latest start handed out
        self._last_sent: float | None = None  # when the latest request really went out
        self._held_until = 0.0
        self._log: deque[Reservation] = deque()  # token reservations, by start time

    @property
    def interval(self) -> float:
        """Seconds between two starts (0 without a requests-per-minute limit); a hair over
        ``window / rpm`` so that sums of it never fall short by a rounding error."""
        return self.window / self.rpm * (1 + 1e-9) if self.rpm > 0 else 0.0

    def _tokens_since(self, since: float) -> float:
        """Tokens reserved by requests starting after ``since`` (call with the lock)."""
        return sum(r.tokens for r in self._log if r.start > since)

    def _token_slot(self, earliest: float, tokens: float) -> float:
        """The first time at or after ``earliest`` when ``tokens`` fit the token window."""
        if self.tpm <= 0:
            return earliest
        if tokens > self.tpm:
            raise LimitError(
                f"a request needs about {tokens:.0f} tokens, more than the limit of {self.tpm:.0f} "
                "tokens per minute: raise --tpm or lower --vlm-max-tokens"
            )
        slot = earliest
        used = self._tokens_since(slot - self.window)
        for entry in list(self._log):
            if used + tokens <= self.tpm:
                break
            if entry.start <= slot - self.window:
                continue  # already out of the window at ``slot``
            slot = max(slot, entry.start + self.window)
            used -= entry.tokens
        return slot

    def reserve(self, tokens: float = 0.0) -> Reservation:
        """Take the next start time for a request expected to use ``tokens``; returns at once.
        Raises ``LimitError`` when the request can never fit."""
        with self._lock:
            now = self.clock()
            while self._log and self._log[0].start <= now - 2 * self.window:
                self._log.popleft()
            earliest = max(now, self._held_until)
            if self._last_start is not None and self.interval:
                earliest = max(earliest, self._last_start + self.interval)
            slot = self._token_slot(earliest, tokens)
            reservation = Reservation(slot, tokens)
            if self.interval:
                self._last_start = slot
            if self.tpm > 0:
                self._log.append(reservation)
        return reservation

    def wait(self, reservation: Reservation) -> float:
        """Sleep until the reservation's start, and until ``interval`` after the request that
        really went out last (a thread that woke late, on a busy machine, pushes the next ones
        back instead of leaving two requests side by side); returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self.clock()
                due = reservation.start
                if self.interval and self._last_sent is not None:
                    due = max(due, self._last_sent + self.interval)
                if now >= due:
                    if self.interval:
                        self._last_sent = now
                    return waited
            self.sleep(due - now)
            waited += due - now

    def acquire(self, tokens: float = 0.0) -> tuple[Reservation, float]:
        """``reserve`` then ``wait``: (the reservation, seconds waited)."""
        reservation = self.reserve(tokens)
        return reservation, self.wait(reservation)

    def settle(self, reservation: Reservation, tokens: float) -> None:
        """The tokens a started request really used (the server's count; 0 for a refused one)."""
        with self._lock:
            reservation.tokens = tokens

    def hold(self, until: float) -> None:
        """Start no request before ``until`` (a server's Retry-After)."""
        with self._lock:
            self._held_until = max(self._held_until, until)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a server asks to wait: ``retry-after-ms``, or ``Retry-After`` as seconds or an
    HTTP date; None when absent or unreadable. Capped at ``RETRY_AFTER_CAP``.

    >>> parse_retry_after({"Retry-After": "2"}), parse_retry_after({"retry-after-ms": "1500"})
    (2.0, 1.5)
    >>> parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0)
    10.0
    >>> parse_retry_after({})
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    value: float | None = None
    if "retry-after-ms" in lower:
        try:
            value = float(lower["retry-after-ms"]) / 1000.0
        except ValueError:
            value = None
    if value is None and "retry-after" in lower:
        text = lower["retry-after"].strip()
        try:
            value = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            value = when.timestamp() - (time.time() if now is None else now)
    if value is None:
        return None
    return min(max(value, 0.0), RETRY_AFTER_CAP)


def backoff(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """The longest wait before retry number ``attempt`` (1, 2, ...): ``base * 2**(attempt-1)``,
    at most ``cap``.

    >>> [backoff(n) for n in (1, 2, 3, 8)]
    [1.0, 2.0, 4.0, 60.0]
    """
    return min(cap, base * 2 ** max(0, attempt - 1))


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    rng: random.Random | None = None,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
) -> float:
    """The wait before retry number ``attempt``: the server's ``Retry-After`` plus up to 10 %
    (at most 1 s) of jitter, else half the backoff plus a random part of the other half.

    >>> rng = random.Random(0)
    >>> 2.0 <= retry_delay(1, 2.0, rng=rng) <= 2.2, 1.0 <= retry_delay(2, rng=rng) <= 2.0
    (True, True)
    """
    rng = rng or random
    if retry_after is not None:
        return retry_after + rng.uniform(0.0, min(1.0, 0.1 * retry_after))
    longest = backoff(attempt, base=base, cap=cap)
    return longest / 2 + rng.uniform(0.0, longest / 2)
