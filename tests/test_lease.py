"""The lease on a campaign run: a live holder keeps it, a stale or killed one loses it (and the job
that takes it over says so), the heartbeat moves, and the campaign leaves a leased run alone."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from amortgap import campaign
from amortgap.lease import LEASE_FILE, LeaseHeld, LeaseLost, acquire, lease, read_lease, release


def test_a_live_lease_is_refused_to_a_second_job_with_its_holder_named(tmp_path):
    held = acquire(tmp_path)
    with pytest.raises(LeaseHeld, match=rf"process {held['pid']} on {socket.gethostname()} \(heartbeat 0 s ago\)"):
        acquire(tmp_path)
    release(tmp_path, held)
    assert not (tmp_path / LEASE_FILE).exists()
    release(tmp_path, acquire(tmp_path))


def test_a_stale_lease_is_taken_over_and_the_new_holder_says_so(tmp_path, capsys):
    old = {"host": "elsewhere", "pid": 1, "token": "old", "taken": 0.0, "heartbeat": time.time() - 700}
    (tmp_path / LEASE_FILE).write_text(json.dumps(old))
    with pytest.raises(LeaseHeld):
        acquire(tmp_path, stale=800)  # 700 s is not stale under a limit of 800
    held = acquire(tmp_path, stale=600)
    assert held["token"] != "old" and read_lease(tmp_path)["token"] == held["token"]
    err = capsys.readouterr().err
    assert "lease: taking over" in err and "from process 1 on elsewhere: its heartbeat is 700 s old" in err
    release(tmp_path, old)  # the old holder, back, removes nothing of the new one's
    assert read_lease(tmp_path)["token"] == held["token"]


def test_the_lease_of_a_killed_holder_on_this_host_is_taken_over_at_once(tmp_path, capsys):
    code = f"from amortgap.lease import acquire; acquire({str(tmp_path)!r}); print('held', flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(LeaseHeld, match=f"process {holder.pid}"):
        acquire(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    held = acquire(tmp_path)  # no wait for a stale heartbeat: its process is gone
    assert held["pid"] != holder.pid
    assert f"its process {holder.pid} is gone from this host" in capsys.readouterr().err


def test_the_holder_refreshes_its_heartbeat_and_releases_the_lease_after(tmp_path):
    with lease(tmp_path, heartbeat=0.05) as held:
        time.sleep(0.4)
        assert read_lease(tmp_path)["heartbeat"] > held.record["taken"]
        assert read_lease(tmp_path)["token"] == held.record["token"]
    assert not (tmp_path / LEASE_FILE).exists()


def test_the_campaign_leaves_a_run_that_another_job_trains_alone(tmp_path, capsys):
    section = {"model_dir": "models/campaign", "num_train": 400,
               "architecture": {"latent_dim": 3, "encoder_hidden": [16], "decoder_hidden": [16]},
               "protocols": {"p": {"epochs": 2, "batch_size": 100}},
               "entries": [{"family": "diagonal", "seed": 0, "protocol": "p"}]}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"campaign": section}))
    config = campaign.load_config(tmp_path / "params.yaml")
    run_dir = config.run_dir("diagonal_p_s0", tmp_path)
    held = acquire(run_dir)  # this test's process: alive, on this host, its heartbeat fresh
    assert campaign.run_campaign(config, deadline=time.time() + 3600, workers=1, root=str(tmp_path)) == []
    assert f"not training diagonal_p_s0: diagonal_p_s0 is being trained by process {held['pid']}" in capsys.readouterr().out
    assert campaign.read_status(run_dir)["status"] == "not started"
    release(run_dir, held)
    [status] = campaign.run_campaign(config, deadline=time.time() + 3600, workers=1, root=str(tmp_path))
    assert status["epoch"] == 2 and not (run_dir / LEASE_FILE).exists()
    assert status["stretches"][-1]["scheduler"] == "none"


def test_a_holder_whose_lease_was_taken_over_stops_and_never_writes_over_the_new_one(tmp_path):
    with lease(tmp_path, heartbeat=0.05) as held:
        held.check()  # still ours
        theirs = {"host": "elsewhere", "pid": 2, "token": "theirs", "taken": time.time(), "heartbeat": time.time()}
        (tmp_path / LEASE_FILE).write_text(json.dumps(theirs))  # taken over while this holder was silent
        with pytest.raises(LeaseLost, match="lost its lease \\(now held by process 2 on elsewhere\\)"):
            held.check()
        time.sleep(0.3)  # heartbeats come and go
        assert read_lease(tmp_path) == theirs
    assert read_lease(tmp_path) == theirs, "the old holder releases nothing of the new one's"


def test_an_unreadable_lease_waits_while_fresh_and_is_taken_over_once_stale(tmp_path, capsys):
    (tmp_path / LEASE_FILE).write_text("")  # a holder killed between creating the file and writing it
    with pytest.raises(LeaseHeld, match="other jobs keep taking it"):
        acquire(tmp_path, stale=600)
    old = time.time() - 700
    os.utime(tmp_path / LEASE_FILE, (old, old))
    held = acquire(tmp_path, stale=600)
    assert read_lease(tmp_path)["token"] == held["token"]
    assert "it is unreadable and 700 s old" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEASE_FILE], "no temporary file is left behind"
