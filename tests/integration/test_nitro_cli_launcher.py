"""The nitro-cli launcher against a stand-in nitro-cli that checks its arguments and runs odyn
on this machine over the emulated vsock folder (no AF_VSOCK is ever opened here)."""
import json
import os
import subprocess

from conftest import BUILD, ROOT
import enclave_util as eu

FAKES = ROOT / "tests" / "integration" / "fakes"


def run_with_fake(tmp_path, app, extra=(), fail=False):
    eif = eu.make_eif(tmp_path, eu.MANIFEST, ["exit", "0"])
    (tmp_path / "v").mkdir()
    (tmp_path / "state").mkdir()
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "enclaver.yaml").write_text(eu.MANIFEST)
    env = dict(os.environ, PATH=f"{FAKES}:{os.environ['PATH']}", FAKE_NITRO_LOG=str(tmp_path / "calls"),
               FAKE_NITRO_STATE=str(tmp_path / "state"), FAKE_ODYN=str(BUILD / "odyn"), FAKE_CONFIG=str(cfg),
               FAKE_APP=f"{eu._probe()} {app}", ENCLAVER_VSOCK_DIR=str(tmp_path / "v"))
    if fail:
        env["FAKE_NITRO_FAIL"] = "1"
    p = subprocess.run([str(BUILD / "enclaver-run"), "--launcher", "nitro-cli", "--eif-file", str(eif),
                        "--manifest-file", str(tmp_path / "enclaver.yaml"), "--cpu-count", "4", *extra],
                       env=env, capture_output=True, text=True, timeout=60)
    calls = [json.loads(l) for l in (tmp_path / "calls").read_text().splitlines()]
    return p, calls


def test_runs_and_terminates_through_nitro_cli(tmp_path):
    p, calls = run_with_fake(tmp_path, "exit 5")
    assert p.returncode == 5, p.stderr
    assert "probe exiting with 5" in p.stdout
    assert "started enclave ID=i-0123456789abcdef0-enc0123456789abcdef, CID=16" in p.stderr
    assert calls[0] == ["run-enclave", "--cpu-count", "4", "--memory", "256", "--eif-path",
                        str(tmp_path / "app.eif")]
    assert calls[-1] == ["terminate-enclave", "--enclave-id", "i-0123456789abcdef0-enc0123456789abcdef"]
    pid = int((tmp_path / "state" / "odyn.pid").read_text())
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_debug_mode_adds_the_flag_and_the_console(tmp_path):
    p, calls = run_with_fake(tmp_path, "exit 0", extra=["--debug-mode"])
    assert p.returncode == 0, p.stderr
    assert calls[0][-1] == "--debug-mode"
    assert ["console", "--enclave-id", "i-0123456789abcdef0-enc0123456789abcdef"] in calls


def test_failure_reports_nitro_cli_error_log(tmp_path):
    p, calls = run_with_fake(tmp_path, "exit 0", fail=True)
    assert p.returncode == 1
    assert "nitro-cli failed (1)" in p.stderr
    assert "E39 Enclave process connection failure" in p.stderr
    assert "failed to run enclave" in p.stderr
    assert [c[0] for c in calls] == ["run-enclave"]
