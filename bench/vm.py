#!/usr/bin/python3
"""bench/vm: the VM enclave against the namespace (local) enclave, in one run, with EIFs of the
default boot kit (its kernel and cmdline, as `enclaver build` makes them) whose app is a probe
"stream" server.

- start: from enclaver-run's start to the app's first answer through ingress. The VM boots the
  EIF's kernel under software emulation; the namespace enclave only unpacks the ramdisks.
- throughput: BYTES one way at a time, host to guest then guest to host, between the host and the
  app on the guest's own vsock port (published with -p: host TCP, enclaver-run's relay, the
  vhost-user back-end, the guest's virtio vsock), against the namespace enclave's path (host TCP,
  relay, odyn, the app's TCP). Printed for reference: both ways at once (an echo), and the VM's
  full ingress path (through odyn and the guest's TCP too).

Targets on this machine: the VM's first answer within 3.5 s; at least 150 MiB/s each way."""
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build").resolve()
os.environ["ENCLAVER_BUILD_DIR"] = str(BUILD)
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import enclave_util as eu  # noqa: E402

BYTES = int(os.environ.get("BENCH_VM_MB", "256")) << 20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BCLIENT = BUILD / "bench" / "bclient"
INNER = 5000
WAYS = ("send", "recv", "echo")  # host to guest, guest to host, both at once


def first_answer(port, proc, timeout=60):
    """Waits for one byte asked of the stream server."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"enclaver-run exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"R" + (1).to_bytes(8, "little"))
                if s.recv(1):
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("no answer")


def run_one(launcher, eif, d, rounds):
    """Seconds to the first answer, and the best MiB/s of rounds for each of WAYS."""
    port = eu.free_port()
    t0 = time.monotonic()
    p = subprocess.Popen([BUILD / "enclaver-run", "--launcher", launcher, "--eif-file", eif, "--manifest-file",
                          d / "enclaver.yaml", "--cpu-count", "1", "-p", f"{port}:{INNER}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first_answer(port, p)
        start = time.monotonic() - t0
        best = {}
        for _ in range(rounds):
            for way in WAYS:
                t = float(subprocess.run([BCLIENT, way, "127.0.0.1", str(port), str(BYTES)], check=True,
                                         capture_output=True, text=True).stdout)
                best[way] = max(best.get(way, 0), BYTES / t / (1 << 20))
        return start, best
    finally:
        p.terminate()
        p.wait(timeout=30)


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="vm-bench-"))
    memory = eu.MANIFEST.replace("memory_mb: 256", "memory_mb: 512")
    try:
        eif = eu.make_eif(tmp, memory + f"ingress:\n  - listen_port: {INNER}\n", ["stream", str(INNER)], kit=True)
        raw_dir = tmp / "raw"
        raw_dir.mkdir()
        # the app listens on the guest's vsock port itself: the host's manifest publishes the port,
        # the EIF's has no ingress (odyn would listen there too)
        raw = eu.make_eif(raw_dir, memory + f"ingress:\n  - listen_port: {INNER}\n", ["vsock-stream", str(INNER)],
                          kit=True, extra_files={"etc/enclaver/enclaver.yaml": memory.encode()})
        local = run_one("local", eif, tmp, ROUNDS)
        starts, odyn = [], {}
        for _ in range(3):
            s, t = run_one("vm", eif, tmp, 1)
            starts.append(s)
            odyn = {w: max(odyn.get(w, 0), t[w]) for w in WAYS}
        vm_raw = run_one("vm", raw, raw_dir, ROUNDS)[1]
        vm_start = sorted(starts)[1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"VM enclave against the namespace enclave, default boot kit, {BYTES >> 20} MiB per transfer (MiB/s):")
    print(f"  {'enclave, path':<34} {'first answer s':>15} {'host to guest':>14} {'guest to host':>14} "
          f"{'both at once':>13}")
    rows = [("namespace, ingress via odyn", f"{local[0]:.2f}", local[1]),
            ("VM, ingress via odyn", f"{vm_start:.2f}", odyn),
            ("VM, the guest vsock port itself", "", vm_raw)]
    for name, start, t in rows:
        print(f"  {name:<34} {start:>15} {t['send']:>14.0f} {t['recv']:>14.0f} {t['echo']:>13.0f}")
    print(f"VM/namespace first answer: {vm_start / local[0]:.1f}x; VM first answer {vm_start:.2f} s "
          f"(median of 3; target <= 3.5)")
    print(f"VM/namespace throughput: host to guest {vm_raw['send'] / local[1]['send']:.2f}, guest to host "
          f"{vm_raw['recv'] / local[1]['recv']:.2f}; VM {vm_raw['send']:.0f} and {vm_raw['recv']:.0f} MiB/s "
          f"(target >= 150 each way)")
    ok = vm_start <= 3.5 and min(vm_raw["send"], vm_raw["recv"]) >= 150
    print("bench vm:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
