"""The one-piece-behind worker of the GeoParquet writer and of an upload's run recording its files."""

from __future__ import annotations

import threading

import pytest

from leaf_dagster.background import OneBehind


def test_work_goes_on_one_piece_behind_and_hands_back_its_errors() -> None:
    """The thread works while the caller makes the next piece (an upload's run its next file); a piece's error is
    raised at the next piece, or at the end for the last; a caller failing on its own raises its own error,
    once the piece in hand is done."""
    def broken(name: str) -> None:
        raise ValueError(f"cannot record {name}")

    run_went_on = threading.Event()
    done: list[str] = []

    def recorded_while_the_run_goes_on(name: str) -> None:
        assert run_went_on.wait(10), "the caller waited for the piece"
        done.append(name)

    with OneBehind("test") as recorder:
        recorder.submit(recorded_while_the_run_goes_on, "first")
        run_went_on.set()
    assert done == ["first"]
    with pytest.raises(ValueError, match="cannot record first"):
        with OneBehind("test") as recorder:
            recorder.submit(broken, "first")
            recorder.submit(done.append, "second")
    with pytest.raises(ValueError, match="cannot record last"):
        with OneBehind("test") as recorder:
            recorder.submit(done.append, "one")
            recorder.submit(broken, "last")
    assert done == ["first", "one"]
    run_went_on.clear()
    with pytest.raises(KeyError, match="the run's own error"):
        with OneBehind("test") as recorder:
            recorder.submit(recorded_while_the_run_goes_on, "pending")
            run_went_on.set()
            raise KeyError("the run's own error")
    assert done == ["first", "one", "pending"]
    with pytest.raises(KeyError, match="the run's own error"):
        with OneBehind("test") as recorder:
            recorder.submit(broken, "pending")
            raise KeyError("the run's own error")
