"""hack/pids.sh: a pid file names its process only while that very process runs.

hack/cluster.sh and hack/realnode.sh stop what their pid files name. A pid file outlives its
process (a crash, a reboot, a machine restored from a snapshot keeps the checkout and /run), and
the kernel may since have given the number to another process: stopping it then would kill
something that is not ours (on the CI machine, a real node left by an earlier run is undone with
its own pid files). These run the shell function against real processes of this machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PIDS = Path(__file__).resolve().parents[2] / "hack" / "pids.sh"


def alive(pid_file: Path) -> bool:
    done = subprocess.run(
        ["bash", "-c", f'source "{PIDS}"; pid_file_alive "$1"', "-", str(pid_file)],
        capture_output=True,
        text=True,
    )
    assert done.stderr == "", done.stderr
    return done.returncode == 0


def test_the_process_a_pid_file_was_written_for_is_alive(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as proc:
        pid_file = tmp_path / "sleep.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert alive(pid_file)
        proc.kill()


def test_a_pid_given_to_a_process_started_after_the_file_was_written_is_not_ours(
    tmp_path: Path,
) -> None:
    """A live process with the recorded number that started later than the file: pid reuse."""
    with subprocess.Popen(["sleep", "30"]) as proc:
        pid_file = tmp_path / "old.pid"
        pid_file.write_text(f"{proc.pid}\n")
        written = time.time() - 3600  # the file of a run an hour ago
        os.utime(pid_file, (written, written))
        assert not alive(pid_file)
        proc.kill()


def test_an_exited_process_a_zombie_a_missing_file_and_garbage_are_not_alive(
    tmp_path: Path,
) -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    (tmp_path / "exited.pid").write_text(f"{exited.pid}\n")
    assert not alive(tmp_path / "exited.pid")

    zombie = subprocess.Popen(["true"])  # not waited for: a zombie until reaped
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.05)
    (tmp_path / "zombie.pid").write_text(f"{zombie.pid}\n")
    assert not alive(tmp_path / "zombie.pid")
    zombie.wait()

    assert not alive(tmp_path / "missing.pid")
    (tmp_path / "garbage.pid").write_text("not a pid\n")
    assert not alive(tmp_path / "garbage.pid")


def write_pid_file(pid_file: Path, pid: int) -> None:
    """hack/pids.sh's write_pid_file: the pid, and beside it the process's start in ticks."""
    done = subprocess.run(
        ["bash", "-c", f'source "{PIDS}"; write_pid_file "$1" "$2"', "-", str(pid_file), str(pid)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_a_wall_clock_that_jumped_forward_does_not_disown_our_own_process(tmp_path: Path) -> None:
    """A VM's clock is corrected now and then: an hour after `hack/cluster.sh up` it had moved 35 s
    ahead of the boot-time count, the control plane's start times read later than their pid files
    and `down` left every component running. As if the clock had jumped an hour since the files
    were written: the start recorded in ticks still names the process."""
    with subprocess.Popen(["sleep", "30"]) as proc:
        pid_file = tmp_path / "kube-apiserver.pid"
        write_pid_file(pid_file, proc.pid)
        assert (tmp_path / "kube-apiserver.pid.start").read_text().strip().isdigit()
        before = time.time() - 3600
        for f in (pid_file, tmp_path / "kube-apiserver.pid.start"):
            os.utime(f, (before, before))
        assert alive(pid_file)
        proc.kill()


def test_a_pid_reused_by_a_process_started_at_another_tick_is_not_ours(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "30"]) as proc:
        pid_file = tmp_path / "etcd.pid"
        write_pid_file(pid_file, proc.pid)
        start = tmp_path / "etcd.pid.start"
        start.write_text(f"{int(start.read_text()) - 1}\n")  # the earlier process of that number
        assert not alive(pid_file)
        proc.kill()


def test_a_start_file_older_than_its_pid_file_is_not_read(tmp_path: Path) -> None:
    """A pid file written again without it (by Python) keeps the older rule: the process started
    no later than the file was written."""
    with subprocess.Popen(["sleep", "30"]) as proc:
        pid_file = tmp_path / "operator.pid"
        start = tmp_path / "operator.pid.start"
        start.write_text("1\n")  # left by an earlier writer
        earlier = time.time() - 60
        os.utime(start, (earlier, earlier))
        pid_file.write_text(f"{proc.pid}\n")
        assert alive(pid_file)
        proc.kill()


def test_cluster_down_never_stops_a_process_that_took_over_a_recorded_pid(tmp_path: Path) -> None:
    """`hack/cluster.sh down` on a cluster directory left by an earlier run (its processes gone,
    their numbers given to others) removes the directory and stops nothing; a process it did start
    (recorded just after it started) is stopped."""
    cluster = tmp_path / "cluster"
    (cluster / "pids").mkdir(parents=True)
    with (
        subprocess.Popen(["sleep", "60"], start_new_session=True) as stranger,
        subprocess.Popen(["sleep", "60"], start_new_session=True) as ours,
    ):
        for name, proc in (("kube-apiserver", stranger), ("operator", ours)):
            (cluster / "pids" / f"{name}.pid").write_text(f"{proc.pid}\n")
        earlier = time.time() - 3600
        os.utime(cluster / "pids" / "kube-apiserver.pid", (earlier, earlier))
        done = subprocess.run(
            ["bash", str(PIDS.parent / "cluster.sh"), "down"],
            env=dict(os.environ, SLIPWAY_CLUSTER_DIR=str(cluster)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert not cluster.exists()
        assert ours.wait(timeout=20) is not None
        assert stranger.poll() is None, "cluster.sh down stopped a process it did not start"
        stranger.kill()
