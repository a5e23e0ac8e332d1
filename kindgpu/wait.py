"""The one way kindgpu waits: poll a probe until it says done or failed, or time runs out."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import KindgpuError


class WaitTimeout(KindgpuError):
    """Something did not become ready in time; the message says what was seen last."""


class WaitFailed(KindgpuError):
    """Something reached a state it cannot recover from (a failed pod, a dead node)."""


@dataclass
class Seen:
    done: bool = False
    failed: str = ""  # non-empty: stop now, this is why
    fix: str = ""  # what to do about `failed`
    last: str = ""  # what was seen, for progress and for the timeout message


def never(err):
    return False


def wait_for(probe, *, what, timeout, interval=1.0, hint="", transient=never, progress=None,
             clock=time.monotonic, sleep=time.sleep):
    """Call probe() -> Seen until done; raise WaitFailed on failed, WaitTimeout after timeout.

    An exception for which `transient(err)` is true counts as "not yet" (an API server still
    starting: kube.is_transient).
    `progress(text)` is told what was seen after every probe. `hint`, what to try after a
    timeout, may be a function, called only then (to describe what is there then); a failure
    says its own remedy.
    """
    def hint_text():
        return hint() if callable(hint) else hint

    deadline = clock() + timeout
    seen = Seen(last="nothing yet")
    while True:
        try:
            seen = probe()
        except Exception as err:  # noqa: PERF203 - retried on purpose
            if not transient(err):
                raise
            seen = Seen(last=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        if progress:
            progress(seen.last)
        if seen.failed:
            raise WaitFailed(f"{what}: {seen.failed}", seen.fix or None)
        if seen.done:
            return seen
        if clock() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen.last}"
                + (f"\nhint: {text}" if (text := hint_text()) else "")
            )
        sleep(interval)
