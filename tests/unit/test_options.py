"""Operator flags: durations take Kubernetes/Go syntax (20s, 5m, 1h30m, 500ms) or seconds."""

from __future__ import annotations

import pytest

from aim_controller.options import parse


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("20s", 20.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1m30s", 90.0),
     ("2.5s", 2.5), ("20", 20.0), ("2.5", 2.5)],
)
def test_unschedulable_grace_takes_durations_and_plain_seconds(value: str, seconds: float) -> None:
    assert parse(["--unschedulable-grace", value]).unschedulable_grace == seconds


def test_defaults_are_unchanged() -> None:
    opts = parse([])
    assert (opts.unschedulable_grace, opts.resync_period) == (300.0, 0.0)
    assert (opts.lease_duration, opts.renew_deadline, opts.retry_period) == (15.0, 10.0, 2.0)


def test_every_duration_flag_takes_durations() -> None:
    opts = parse([
        "--resync-period", "10m",
        "--leader-elect-lease-duration", "1m",
        "--leader-elect-renew-deadline", "40s",
        "--leader-elect-retry-period", "500ms",
    ])
    assert (opts.resync_period, opts.lease_duration, opts.renew_deadline,
            opts.retry_period) == (600.0, 60.0, 40.0, 0.5)
    assert parse(["--resync-period", "0"]).resync_period == 0.0


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--unschedulable-grace", "0s"), ("--unschedulable-grace", "5 m"),
     ("--unschedulable-grace", "5x"), ("--unschedulable-grace", "-1"),
     ("--unschedulable-grace", "inf"), ("--unschedulable-grace", "nan"),
     ("--resync-period", "-5s"), ("--leader-elect-retry-period", "m")],
)
def test_bad_durations_are_usage_errors(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse([f"{flag}={value}"])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_renew_deadline_is_still_checked_against_the_lease_with_durations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse(["--leader-elect-lease-duration", "10s", "--leader-elect-renew-deadline", "1m"])
    assert "shorter than the lease duration" in capsys.readouterr().err


def test_watch_stall_timeout_defaults_to_the_reflectors_and_takes_durations() -> None:
    from aim_controller.machinery.reflector import DEFAULT_STALL_TIMEOUT

    assert parse([]).watch_stall_timeout == DEFAULT_STALL_TIMEOUT == 150.0
    assert parse(["--watch-stall-timeout", "20s"]).watch_stall_timeout == 20.0
    with pytest.raises(SystemExit):
        parse(["--watch-stall-timeout", "0s"])
