"""SIGTERM and Ctrl-C as requests to stop: the loop finishes its step, saves, and returns.

A second Ctrl-C while stopping raises KeyboardInterrupt at once. Handlers are
installed only in the main thread (Python allows no other) and restored on exit.
"""

import contextlib
import signal
import threading


class StopRequest:
  """`signum` is the signal that asked to stop, or None."""

  def __init__(self):
    self.signum = None

  def __bool__(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""


@contextlib.contextmanager
def stop_requests():
  """Yield a StopRequest set by SIGTERM or SIGINT while the block runs."""
  request = StopRequest()
  if threading.current_thread() is not threading.main_thread():
    yield request
    return

  def handle(signum, frame):
    if request.signum == signal.SIGINT and signum == signal.SIGINT:
      raise KeyboardInterrupt
    request.signum = signum

  previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield request
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
