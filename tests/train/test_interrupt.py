"""Ctrl-C and SIGTERM become stop requests; a second Ctrl-C interrupts at once."""

import os
import signal

import pytest

from tfmr_jax.train.interrupt import stop_requests


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_sets_the_request_instead_of_killing(signum):
  before = signal.getsignal(signum)
  with stop_requests() as stop:
    assert not stop
    os.kill(os.getpid(), signum)
    assert stop and stop.signum == signum and stop.name == signal.Signals(signum).name
  assert signal.getsignal(signum) is before


def test_second_ctrl_c_raises_keyboard_interrupt():
  with pytest.raises(KeyboardInterrupt), stop_requests():
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)
