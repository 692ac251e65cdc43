import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import pytest

from core import jobs, locks
from core.errors import UserError
from core.runs import Run


def _wait_done(run: Run, timeout=120):
    t0 = time.time()
    while run.status().get("state") in ("running", "missing") and time.time() - t0 < timeout:
        time.sleep(0.3)
    return run.status()["state"]


def test_one_training_per_device_and_the_second_is_told_which(small_demo, tmp_path, tiny_settings, monkeypatch):
    monkeypatch.setenv("FIGURINES_DATA_ROOTS", str(small_demo))  # the app resumes only runs on its own data
    s = replace(tiny_settings, epochs=400)
    first = jobs.launch(tmp_path / "first", s, str(small_demo), encode=False)
    assert first.status()["state"] == "running" and jobs.active("cpu").name == "first"
    with pytest.raises(UserError, match=r"run first \(process \d+, since \d\d:\d\d\) is already training on the cpu"):
        jobs.launch(tmp_path / "second", s, str(small_demo))
    first.request_stop()
    assert _wait_done(first) == "stopped" and jobs.active("cpu") is None
    second = jobs.launch(tmp_path / "second", replace(s, epochs=1), str(small_demo), encode=False)
    assert _wait_done(second) == "done"
    old_pid = first.status()["pid"]
    jobs.launch(first.dir, resume=True, encode=False)  # resume continues the stopped run
    assert first.status()["pid"] != old_pid
    first.request_stop()
    assert _wait_done(first) == "stopped" and first.load_checkpoint()["epoch"] == first.status()["epoch"]


def test_a_finished_training_leaves_no_defunct_process(small_demo, tmp_path, tiny_settings):
    run = jobs.launch(tmp_path / "done", replace(tiny_settings, epochs=1), str(small_demo), encode=False)
    pid = run.status()["pid"]
    assert _wait_done(run) == "done"
    t0 = time.time()
    while time.time() - t0 < 30:  # reaped by the app: the pid is gone, not left a zombie under the server
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        assert state != "Z" or time.time() - t0 < 10, "the finished trainer is a defunct process"
        time.sleep(0.2)
    raise AssertionError("the trainer is still running after its run finished")


def test_stale_locks_do_not_block(small_demo, tmp_path, tiny_settings):
    """A lock file whose holder is gone (it names a run and a pid, but nobody holds it) blocks nothing."""
    lock = locks.device_lock("cpu")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"run": str(tmp_path / "ghost"), "pid": 2**22 + 7, "since": 1.0}))
    assert jobs.active("cpu") is None
    run = jobs.launch(tmp_path / "next", replace(tiny_settings, epochs=1), str(small_demo), encode=False)
    assert _wait_done(run) == "done" and jobs.active("cpu") is None


def test_a_training_that_cannot_start_says_why(tmp_path, tiny_settings):
    run = jobs.launch(tmp_path / "bad", tiny_settings, str(tmp_path / "no-such-folder"), encode=False)
    assert run.status()["state"] == "missing"
    assert "dataset folder not found" in jobs.log_tail(run)


def _launch_together(barrier, run_dir, settings, data):
    """In another process: wait until the other one is ready too, then launch; the error text if refused."""
    barrier.wait()
    try:
        jobs.launch(run_dir, settings, data, encode=False)
        return None
    except UserError as e:
        return str(e)


def test_two_processes_launching_at_the_same_moment_start_one_training(small_demo, tmp_path, tiny_settings):
    s = replace(tiny_settings, epochs=2000)
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager, ProcessPoolExecutor(2, mp_context=spawn) as pool:
        barrier = manager.Barrier(2)
        outcomes = list(pool.map(_launch_together, [barrier] * 2, [tmp_path / "a", tmp_path / "b"],
                                 [s] * 2, [str(small_demo)] * 2))
    started = [Run(tmp_path / n) for n in "ab" if (tmp_path / n).exists()]
    try:
        assert sorted(o is None for o in outcomes) == [False, True] and len(started) == 1
        assert jobs.active("cpu").name == started[0].name
        assert f"run {started[0].name} (process" in next(o for o in outcomes if o)
    finally:
        for run in started:
            run.request_stop()
    assert _wait_done(started[0]) == "stopped"


def test_the_estimate_counts_the_epochs_with_the_look_alike_and_shape_terms():
    """A run's time is its plain epochs' rate times what its epochs cost: a past run's rate is read the same way,
    so a plain run and a fast one with both terms on this machine give the same estimate."""
    from types import SimpleNamespace

    import pandas as pd

    from core.devices import device_name, pick_device
    from core.settings import Settings

    fast = Settings.from_preset("fast", device="cpu", epochs=30)
    costs = [jobs.epoch_cost(fast, e) for e in range(1, 31)]
    assert costs[:5] == [1.0] * 5 and costs[5] == pytest.approx(1 + jobs.LOOKALIKE_COST + 4 * jobs.SHAPE_COST)

    def past(settings, seconds):
        cfg = {"device": device_name(pick_device("cpu")), "images": 1000, "effective": settings.to_dict()}
        metrics = pd.DataFrame({"epoch": range(1, len(seconds) + 1), "seconds": seconds})
        return SimpleNamespace(name="past", config=lambda: cfg, metrics=lambda: metrics)

    plain = past(Settings.from_preset("fast", neighbours=False, shape=0.0, epochs=10), [1.0] * 10)
    both = past(fast, [c * 1.0 for c in costs])  # the same machine's rate, with both terms from epoch 6
    for run in (plain, both):
        seconds, basis = jobs.estimate(fast, 1000, [run])
        assert seconds == pytest.approx(sum(costs)) and "run past" in basis
    seconds, basis = jobs.estimate(fast, 750, [])  # the measured plain rate, 750 images/s at 64 px, and 0.35 s
    assert seconds == pytest.approx(sum(costs) + 30 * jobs.EPOCH_SECONDS) and "2-core CPU" in basis
    assert jobs.estimate(Settings.from_preset("fast", device="cpu", shape=0.0, neighbours=False), 750, [])[0] == \
        pytest.approx(30 * (1 + jobs.EPOCH_SECONDS))
