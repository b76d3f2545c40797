"""The nitro-cli launcher against a stand-in nitro-cli that checks its arguments and runs odyn
on this machine over the emulated vsock folder (no AF_VSOCK is ever opened here)."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import BUILD, ROOT
import enclave_util as eu

FAKES = ROOT / "tests" / "integration" / "fakes"
EGRESS = eu.MANIFEST + "egress:\n  allow:\n    - host\n"
ENCLAVE_ID = "i-0123456789abcdef0-enc0123456789abcdef"


class HostOf:
    """One host: a vsock folder and a claims folder that every enclaver-run started here shares."""

    def __init__(self, d):
        self.d = d
        self.vdir = d / "v"
        self.run_dir = d / "run"
        self.vdir.mkdir(exist_ok=True)
        self.launches = []

    def close(self):
        """What a failed test leaves: its enclaver-runs and the stand-in enclaves they started."""
        for r in self.launches:
            if r.p.poll() is None:
                r.p.kill()
                r.p.wait()
            try:
                os.killpg(r.pid_of("odyn.pid"), signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def start(self, name, app, extra=(), manifest=eu.MANIFEST, fail=False, fake_env=None):
        d = self.d / name
        d.mkdir()
        eif = eu.make_eif(d, manifest, ["exit", "0"])
        (d / "state").mkdir()
        cfg = d / "cfg"
        cfg.mkdir()
        (cfg / "enclaver.yaml").write_text(manifest)
        env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}", FAKE_NITRO_LOG=str(d / "calls"),
                   FAKE_NITRO_STATE=str(d / "state"), FAKE_ODYN=str(BUILD / "odyn"), FAKE_CONFIG=str(cfg),
                   FAKE_APP=f"{eu._probe()} {app}", ENCLAVER_VSOCK_DIR=str(self.vdir),
                   ENCLAVER_RUN_DIR=str(self.run_dir))
        env.update(fake_env or {})
        if fail:
            env["FAKE_NITRO_FAIL"] = "1"
        err = open(d / "stderr", "w")
        p = subprocess.Popen([str(BUILD / "enclaver-run"), "--launcher", "nitro-cli", "--eif-file", str(eif),
                              "--manifest-file", str(d / "enclaver.yaml"), "--cpu-count", "4", *extra],
                             env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        self.launches.append(Launch(p, d, err))
        return self.launches[-1]


class Launch:
    def __init__(self, p, d, err):
        self.p, self.d, self._err = p, d, err

    def wait(self, timeout=60):
        self.out, _ = self.p.communicate(timeout=timeout)
        self._err.close()
        return self.p.returncode

    @property
    def err(self):
        return (self.d / "stderr").read_text()

    def calls(self):
        path = self.d / "calls"
        return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []

    def masks(self):
        return [l.split() for l in (self.d / "calls.signals").read_text().splitlines()]

    def await_err(self, text, timeout=20):
        end = time.time() + timeout
        while time.time() < end and text not in self.err:
            assert self.p.poll() is None, self.err
            time.sleep(0.05)
        assert text in self.err

    def pid_of(self, name):
        return int((self.d / "state" / name).read_text())


@pytest.fixture
def Host(tmp_path):
    hosts = []

    def make(d):
        hosts.append(HostOf(d))
        return hosts[-1]
    yield make
    for h in hosts:
        h.close()


def gone(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_runs_and_terminates_through_nitro_cli(tmp_path, Host):
    r = Host(tmp_path).start("a", "exit 5")
    assert r.wait() == 5, r.err
    assert "probe exiting with 5" in r.out
    assert f"started enclave ID={ENCLAVE_ID}, CID=16" in r.err
    calls = r.calls()
    assert calls[0] == ["run-enclave", "--cpu-count", "4", "--memory", "256", "--eif-path", str(r.d / "app.eif")]
    assert calls[-1] == ["terminate-enclave", "--enclave-id", ENCLAVE_ID]
    assert gone(r.pid_of("odyn.pid"))


def test_debug_mode_adds_the_flag_and_the_console(tmp_path, Host):
    r = Host(tmp_path).start("a", "sleep 1", extra=["--debug-mode"])  # long enough for the console to start
    assert r.wait() == 0, r.err
    calls = r.calls()
    assert calls[0][-1] == "--debug-mode"
    assert ["console", "--enclave-id", ENCLAVE_ID] in calls
    assert "fake console line" in r.err
    # the enclave went first, and the console ended by itself once it was gone
    assert calls.index(["terminate-enclave", "--enclave-id", ENCLAVE_ID]) == len(calls) - 1
    assert gone(r.pid_of("console.pid"))


def test_debug_mode_stops_on_sigterm(tmp_path, Host):
    """The console exits only when the enclave is gone: the enclave must be terminated first, and
    no child may inherit the signals enclaver-run blocks for itself."""
    r = Host(tmp_path).start("a", "sleep 60", extra=["--debug-mode"])
    r.await_err("fake console line")
    r.await_err("started enclave")
    r.p.send_signal(signal.SIGTERM)
    assert r.wait(timeout=20) == 109, r.err
    assert ["terminate-enclave", "--enclave-id", ENCLAVE_ID] in r.calls()
    assert gone(r.pid_of("console.pid"))
    assert gone(r.pid_of("odyn.pid"))
    # every nitro-cli was started with nothing blocked
    masks = r.masks()
    assert {m[0] for m in masks} == {"run-enclave", "console", "terminate-enclave"}
    assert all(int(m[1], 16) == 0 for m in masks), masks


def test_the_enclave_ending_ends_the_run(tmp_path, Host):
    """With no enclave fd to watch, the end of nitro-cli's enclave process is the enclave's."""
    r = Host(tmp_path).start("a", "sleep 60")
    r.await_err("started enclave")
    t0 = time.time()
    os.killpg(r.pid_of("odyn.pid"), signal.SIGKILL)
    assert r.wait(timeout=20) == 1, r.err
    assert time.time() - t0 < 5
    assert (f"the enclave stopped before its app finished: enclave {ENCLAVE_ID} stopped "
            f"(nitro-cli's enclave process {r.pid_of('odyn.pid')} ended)") in r.err
    # gone already: nothing to terminate
    assert [c[0] for c in r.calls()] == ["run-enclave"]


def test_failure_reports_nitro_cli_error_log(tmp_path, Host):
    r = Host(tmp_path).start("a", "exit 0", fail=True)
    assert r.wait() == 1
    assert "nitro-cli failed (1)" in r.err
    assert "E39 Enclave process connection failure" in r.err
    assert "failed to run enclave" in r.err
    assert [c[0] for c in r.calls()] == ["run-enclave"]


def test_second_enclave_with_egress_names_the_first(tmp_path, Host):
    host = Host(tmp_path)
    first = host.start("a", "sleep 60", manifest=EGRESS)
    first.await_err("started enclave")
    second = host.start("b", "exit 0", manifest=EGRESS)
    assert second.wait() == 1
    lines = [l for l in second.err.splitlines() if "17002" in l and "error" in l]
    assert lines == [f"enclaver-run: error: vsock port 17002 (egress) is held by enclaver-run pid {first.p.pid} "
                     f"on {socket.gethostname()}, enclave {ENCLAVE_ID} ({first.d / 'app.eif'}): one enclave per "
                     "host can have it; stop that one first"], second.err
    assert second.calls() == []  # refused before nitro-cli was asked for anything
    # the first one is untouched and still serves its enclave
    assert first.p.poll() is None
    first.p.send_signal(signal.SIGTERM)
    assert first.wait() == 109, first.err
    # once it is gone, the port is free again
    third = host.start("c", "exit 3", manifest=EGRESS)
    assert third.wait() == 3, third.err


def test_egress_port_held_by_another_program(tmp_path, Host):
    host = Host(tmp_path)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(host.vdir / "3.17002"))  # a vsock-proxy, say, on the parent's port
    s.listen()
    r = host.start("a", "exit 0", manifest=EGRESS)
    assert r.wait() == 1
    assert ("vsock port 17002 (egress) is in use by a program other than enclaver-run (a vsock-proxy, an enclave "
            "nitro-cli is booting, or an enclaver-run whose container does not share /run/enclaver?): stop it or "
            "try again") in r.err
    assert r.calls() == []
    s.close()


def test_two_enclaves_boot_one_after_the_other(tmp_path, Host):
    """Every enclave's init reports on the parent's port 9000: a second launch waits for the
    first's boot, says for whom, then starts."""
    host = Host(tmp_path)
    first = host.start("a", "sleep 60", fake_env={"FAKE_BOOT_SECONDS": "2"})
    time.sleep(0.5)
    second = host.start("b", "exit 4", fake_env={"FAKE_CID": "17"})
    assert second.wait() == 4, second.err
    assert (f"waiting for enclaver-run pid {first.p.pid} on {socket.gethostname()}, booting "
            f"{first.d / 'app.eif'} through nitro-cli to release vsock port 9000 (the boot heartbeat)") in second.err
    assert "started enclave ID=" in first.err  # the first had booted when the second went on
    assert first.p.poll() is None
    first.p.send_signal(signal.SIGTERM)
    assert first.wait() == 109, first.err
