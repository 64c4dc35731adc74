"""Progress without a terminal: a line after the first step and then at least every minute, with
the step, the loss, the rate and the time left; the loss is read only for a line; a bar instead on
a terminal. Time comes from a fake clock."""

import logging

import pytest
from msseg.progress import StepProgress, format_duration


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_without_a_terminal_a_line_after_the_first_step_and_every_minute(caplog):
    clock, reads = _Clock(), []

    def loss():
        reads.append(clock.now)
        return 0.5

    progress = StepProgress(10, desc="epoch 1/2", unit="image", terminal=False, clock=clock)
    with caplog.at_level(logging.INFO, logger="msseg.progress"):
        for _ in range(10):
            clock.now += 25.0  # 25 s a step, 2 images a step
            progress.step(2, loss=loss)
    progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["epoch 1/2: step 1/10, loss 0.5000, 0.1 image/s, 4 min left",
                     "epoch 1/2: step 4/10, loss 0.5000, 0.1 image/s, 2 min left",
                     "epoch 1/2: step 7/10, loss 0.5000, 0.1 image/s, 75 s left",
                     "epoch 1/2: step 10/10, loss 0.5000, 0.1 image/s, 0 s left"]
    assert reads == [25.0, 100.0, 175.0, 250.0]  # the loss is read for the lines only


def test_on_a_terminal_a_bar_and_no_lines(caplog):
    progress = StepProgress(3, desc="epoch 1/1", terminal=True, clock=_Clock())
    with caplog.at_level(logging.INFO, logger="msseg.progress"):
        for _ in range(3):
            progress.step(1, loss=lambda: 1.0)
    assert progress._bar is not None and progress._bar.n == 3
    progress.close()
    assert caplog.records == []
    hidden = StepProgress(3, desc="rank 1", enabled=False, terminal=False, clock=_Clock())
    with caplog.at_level(logging.INFO, logger="msseg.progress"):
        hidden.step(1, loss=pytest.fail)
    assert caplog.records == []


@pytest.mark.parametrize(("seconds", "text"), [(42, "42 s"), (700, "12 min"), (12240, "3.4 h")])
def test_durations_read_as_people_say_them(seconds, text):
    assert format_duration(seconds) == text
