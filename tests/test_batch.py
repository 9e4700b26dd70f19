"""Class-scale grading: what a run selects, the ledger, the course lock, grading slots (fast),
and, through real nbgrader on the test lab, parallel = serial, resume after a kill, and a Dask
cluster on loopback that loses a worker mid-class (slow)."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from autograder import batch, course, demo, sandbox, slots, worker
from tests.conftest import ROOT

MINI = ROOT / "tests" / "templates" / "mini.md"


# ---------------------------------------------------------------- fast: planning and locks


def fake_course(tmp_path: Path, students: dict[str, bytes | None]) -> Path:
    """A course with one released lab `lab` and a folder per student (None: no notebook)."""
    root = tmp_path / "course"
    nb = nbformat.writes(nbformat.v4.new_notebook()).encode()
    for folder in ("source", "release"):
        (root / folder / "lab").mkdir(parents=True)
        (root / folder / "lab" / "lab.ipynb").write_bytes(nb)
    for student, body in students.items():
        folder = root / "submitted" / student / "lab"
        folder.mkdir(parents=True)
        if body is not None:
            (folder / "lab.ipynb").write_bytes(body)
    return root


def graded(root: Path, student: str) -> None:
    """Pretend `student` was graded from the bytes now submitted."""
    (task,) = batch.plan(
        root, batch.Selection(frozenset([student]), force=True), worker.Policy()
    ).tasks
    batch.append_ledger(root, {"student": student, "lab": "lab", "digest": task.digest})


def planned(root: Path, **selection) -> list[str]:
    return [
        t.student for t in batch.plan(root, batch.Selection(**selection), worker.Policy()).tasks
    ]


def test_a_run_grades_what_is_not_graded_yet(tmp_path) -> None:
    root = fake_course(tmp_path, {"ann": b"{}", "bob": b"{}", "cid": None})
    graded(root, "ann")
    assert planned(root) == ["bob", "cid"]
    (root / "submitted" / "ann" / "lab" / "lab.ipynb").write_bytes(b"{ }")  # resubmitted
    assert planned(root) == ["bob", "cid"], "without --changed a graded submission stays"
    assert planned(root, changed=True) == ["ann", "bob", "cid"]
    graded(root, "ann")
    assert planned(root, changed=True) == ["bob", "cid"]
    assert planned(root, force=True) == ["ann", "bob", "cid"]
    assert planned(root, force=True, students=frozenset({"bob"})) == ["bob"]
    assert planned(root, force=True, labs=frozenset({"other"})) == []


def test_a_changed_lab_source_counts_as_changed(tmp_path) -> None:
    root = fake_course(tmp_path, {"ann": b"{}"})
    graded(root, "ann")
    assert planned(root, changed=True) == []
    source = root / "source" / "lab" / "lab.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("1"))
    nbformat.write(nb, source)
    assert planned(root, changed=True) == ["ann"]


def test_the_ledger_survives_a_line_cut_by_a_crash(tmp_path) -> None:
    root = fake_course(tmp_path, {"ann": b"{}", "bob": b"{}"})
    graded(root, "ann")
    with open(root / batch.LEDGER, "a") as ledger:
        ledger.write('{"student": "bob", "lab": "la')  # killed mid-write
    assert planned(root) == ["bob"]
    assert set(batch.read_ledger(root)) == {("ann", "lab")}


def test_a_second_run_on_a_course_is_refused(tmp_path) -> None:
    root = fake_course(tmp_path, {})
    with batch.course_lock(root):
        with pytest.raises(batch.CourseBusy, match=f"pid {os.getpid()}"):
            with batch.course_lock(root):
                pass
    with batch.course_lock(root):  # released: the next run may start
        pass


def test_slots_give_concurrent_jobs_their_own_user_and_device(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(slots.tempfile, "gettempdir", lambda: str(tmp_path))
    with slots.held_slot(devices=2, kernels_per_device=2) as a:
        with slots.held_slot(devices=2, kernels_per_device=2) as b:
            with slots.held_slot(devices=2, kernels_per_device=2) as c:
                assert [s.number for s in (a, b, c)] == [0, 1, 2]
                assert len({a.uid, b.uid, c.uid}) == 3 and a.uid == sandbox.SANDBOX_UID
                assert [s.cuda_devices for s in (a, b, c)] == ["0", "1", "0"]
    with slots.held_slot(devices=0) as cpu:
        assert cpu.number == 0 and cpu.cuda_devices is None  # released and reused


def test_a_job_waits_for_a_slot_when_every_device_is_busy(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(slots.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(slots, "WAIT_S", 0.05)
    order = []
    with slots.held_slot(devices=1, kernels_per_device=1):

        def second() -> None:
            with slots.held_slot(devices=1, kernels_per_device=1) as slot:
                order.append(("second", slot.number))

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append(("first done", 0))
    thread.join(timeout=5)
    assert order == [("first done", 0), ("second", 0)]


def test_a_kernel_sees_only_its_slot_device(tmp_path) -> None:
    box = sandbox.Sandbox(tmp_path, tmp_path, tmp_path, cuda_devices="1")
    assert box.environment({})["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in sandbox.Sandbox(tmp_path, tmp_path, tmp_path).environment(
        {}
    )


def test_progress_is_quiet_off_a_terminal(capsys) -> None:
    bar = batch.progress_bar(3, None)  # pytest's stderr is not a terminal
    bar.update(3)
    bar.close()
    assert bar.disable and capsys.readouterr().err == ""


def test_default_workers_fill_the_cores(monkeypatch) -> None:
    monkeypatch.setattr(slots, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert batch.default_workers(worker.Policy(threads="1")) == 16
    assert batch.default_workers(worker.Policy(threads="4")) == 4
    monkeypatch.setattr(slots, "cuda_device_count", lambda: 2)
    assert batch.default_workers(worker.Policy(kernels_per_device=3)) == 6


# ---------------------------------------------------------------- slow: real grading


def scores(course_dir: Path) -> dict[str, list[tuple[str, float]]]:
    """Every student's per-test scores from results.json."""
    found = {}
    for path in sorted((course_dir / "autograded").glob("*/mini/results.json")):
        tests = json.loads(path.read_text())["tests"]
        found[path.parent.parent.name] = [(t["name"], t["score"]) for t in tests]
    return found


@pytest.fixture(scope="module")
def mini_class(tmp_path_factory) -> Path:
    """The test lab released, with 6 submissions (the demo's three students, twice) and
    the scores of grading them one at a time: the reference every other run must match."""
    out = tmp_path_factory.mktemp("class")
    demo.run_demo([MINI], out, ROOT / "examples")
    root = out / "course"
    for student in ("full", "partial", "untouched"):
        shutil.copytree(root / "submitted" / student, root / "submitted" / f"{student}-2")
    course.autograde(root, workers=1)  # the copies; the demo graded the originals
    return root


def fresh_copy(mini_class: Path, tmp_path: Path) -> Path:
    """The class as submitted, nothing graded (the gradebook keeps the released lab)."""
    root = tmp_path / "course"
    ignore = shutil.ignore_patterns("autograded", "feedback", "graded.jsonl", "autograde.log")
    shutil.copytree(mini_class, root, ignore=ignore)
    course.write_config(root)
    return root


def ledger_lines(root: Path) -> list[tuple[str, str]]:
    lines = (root / batch.LEDGER).read_text().splitlines()
    return [(json.loads(x)["student"], json.loads(x)["lab"]) for x in lines]


@pytest.mark.slow
def test_two_workers_give_the_scores_of_one(mini_class, tmp_path) -> None:
    expected = scores(mini_class)
    assert len(expected) == 6 and expected["full-2"] == expected["full"]
    root = fresh_copy(mini_class, tmp_path)
    summary = course.autograde(root, workers=2)
    assert scores(root) == expected
    assert len(summary.outcomes) == 6 and not summary.lost
    assert len({o.worker for o in summary.outcomes}) == 2, "both workers graded"
    log = (root / batch.LOG).read_text().splitlines()
    assert len(log) == 6 and all(" ok" in line or "stopped" in line for line in log)
    assert sorted(ledger_lines(root)) == sorted((s, "mini") for s in expected)


@pytest.mark.slow
def test_a_killed_run_resumes_without_grading_anything_twice(mini_class, tmp_path) -> None:
    root = fresh_copy(mini_class, tmp_path)
    command = [sys.executable, "-m", "autograder.cli", "autograde", "--course", str(root)]
    run = subprocess.Popen([*command, "--workers", "2"], cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if (root / batch.LEDGER).is_file() and len(ledger_lines(root)) >= 2:
            break
        time.sleep(0.2)
    assert run.poll() is None, "the class finished before it could be interrupted"
    os.kill(run.pid, signal.SIGKILL)  # the coordinator only: its workers must die with it
    run.wait()
    done_before = ledger_lines(root)
    assert 2 <= len(done_before) < 6
    time.sleep(2)
    assert not worker_processes(run.pid), "a worker of the killed run is still grading"
    subprocess.run([*command, "--workers", "2"], cwd=ROOT, check=True, timeout=600)
    lines = ledger_lines(root)
    assert sorted(lines) == sorted(set(lines)), "a submission was graded twice"
    assert lines[: len(done_before)] == done_before and len(lines) == 6
    assert scores(root) == scores(mini_class)


def worker_processes(coordinator: int) -> list[int]:
    """Processes left of a pool whose coordinator was `coordinator` (spawned workers name it)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline and f"parent_pid={coordinator}".encode() in cmdline:
            found.append(int(pid))
    return found


@pytest.mark.slow
def test_a_dask_cluster_grades_the_class_and_survives_a_dead_worker(mini_class, tmp_path) -> None:
    root = fresh_copy(mini_class, tmp_path)
    scheduler_file = tmp_path / "scheduler.json"
    bin_dir = Path(sys.executable).parent
    # the workers run this checkout's grader, as the coordinator does
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)}
    common = dict(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scheduler = subprocess.Popen(
        [bin_dir / "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        start_new_session=True, **common,
    )  # fmt: skip
    workers = [
        subprocess.Popen(
            [
                bin_dir / "dask",
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"w{i}",
            ],
            start_new_session=True,
            cwd=tmp_path,
            **common,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        from distributed import Client

        deadline = time.monotonic() + 120
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        victim = killer(workers)
        summary = course.autograde(root, scheduler=address)
        victim.join(timeout=10)
        assert not summary.lost and len(summary.outcomes) == 6, summary.lines()
        assert victim.killed, "no worker was killed while it graded"
        assert scores(root) == scores(mini_class)
        assert sorted(ledger_lines(root)) == sorted(set(ledger_lines(root)))
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class killer(threading.Thread):
    """Kill the first worker seen grading (its kernel running for 3 s), once."""

    def __init__(self, workers: list[subprocess.Popen]) -> None:
        super().__init__(daemon=True)
        self.workers, self.killed = workers, False
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for process in self.workers:
                with contextlib.suppress(psutil.Error):
                    if psutil.Process(process.pid).children(recursive=True):
                        time.sleep(3)  # well into the job
                        os.killpg(process.pid, signal.SIGKILL)
                        self.killed = True
                        return
            time.sleep(0.2)
