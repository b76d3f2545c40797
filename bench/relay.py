#!/usr/bin/python3
"""bench/relay: the ingress path, host TCP -> emulated vsock (Unix socket) -> enclave TCP, as
enclaver runs it (enclaver-run and odyn around a local enclave), against the same two hops done
by a direct copy (the simplest blocking forwarder), by socat and by nginx's stream proxy, all to
the same echo server, in one run. Prints throughput (bytes each way, best of ROUNDS), median and
99th-percentile round-trip latency, the ratios, and odyn's idle RSS.

Budgets: enclaver >= 90% of the direct copy's throughput and ahead of socat; odyn idle RSS under
4 MiB."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "build").resolve()
os.environ["ENCLAVER_BUILD_DIR"] = str(BUILD)
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import enclave_util as eu  # noqa: E402

BYTES = int(os.environ.get("BENCH_RELAY_MB", "1024")) << 20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PINGS = 5000
PROBE = BUILD / "tests" / "probe"
BCLIENT = BUILD / "bench" / "bclient"
FWD = BUILD / "bench" / "fwd"


free_port = eu.free_port
wait_echo = eu.wait_echo


def measure(port):
    best = None
    for _ in range(ROUNDS):
        t = float(subprocess.run([BCLIENT, "thru", "127.0.0.1", str(port), str(BYTES)], check=True,
                                 capture_output=True, text=True).stdout)
        best = t if best is None else min(best, t)
    p50, p99 = map(float, subprocess.run([BCLIENT, "lat", "127.0.0.1", str(port), str(PINGS)], check=True,
                                          capture_output=True, text=True).stdout.split())
    return BYTES / best / 1e6, p50, p99


def main():
    procs = []
    results = {}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="relay-bench-"))
    try:
        sink = free_port()
        procs.append(subprocess.Popen([PROBE, "echo", str(sink)], stdout=subprocess.DEVNULL))
        wait_echo(sink)
        results["no proxy"] = measure(sink)

        p = free_port()
        procs.append(subprocess.Popen([FWD, "unix2tcp", str(tmp / "d.sock"), str(sink)]))
        time.sleep(0.2)
        procs.append(subprocess.Popen([FWD, "tcp2unix", str(p), str(tmp / "d.sock")]))
        wait_echo(p)
        results["direct copy"] = measure(p)

        if shutil.which("socat"):
            p = free_port()
            procs.append(subprocess.Popen(["socat", f"UNIX-LISTEN:{tmp}/s.sock,fork",
                                           f"TCP:127.0.0.1:{sink}"]))
            time.sleep(0.2)
            procs.append(subprocess.Popen(["socat", f"TCP-LISTEN:{p},fork,reuseaddr",
                                           f"UNIX-CONNECT:{tmp}/s.sock"]))
            wait_echo(p)
            results["socat"] = measure(p)

        if shutil.which("nginx") and os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
            p = free_port()
            (tmp / "nginx.conf").write_text(f"""
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
user root;
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err;
events {{ worker_connections 1024; }}
stream {{
  proxy_half_close on;
  server {{ listen 127.0.0.1:{p}; proxy_pass unix:{tmp}/n.sock; }}
  server {{ listen unix:{tmp}/n.sock; proxy_pass 127.0.0.1:{sink}; }}
}}
""")
            procs.append(subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]))
            wait_echo(p)
            results["nginx stream"] = measure(p)

        # enclaver: a local enclave with the same echo server inside, published on a host port
        inner = free_port()
        d = tmp / "enclave"
        d.mkdir()
        manifest = eu.MANIFEST.replace("memory_mb: 256", "memory_mb: 512") + \
            f"ingress:\n  - listen_port: {inner}\n"
        eif = eu.make_eif(d, manifest, ["echo", str(inner)])
        enc = subprocess.Popen([BUILD / "enclaver-run", "--eif-file", eif, "--manifest-file", d / "enclaver.yaml"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(enc)
        wait_echo(inner)
        time.sleep(2)
        odyn_rss = None
        odyn = eu.enclave_init_pid(eu.enclave_init_pid(enc.pid))  # this enclave's: init's child
        try:
            for line in open(f"/proc/{odyn}/status"):
                if line.startswith("VmRSS:"):
                    odyn_rss = int(line.split()[1])
        except OSError:
            pass
        results["enclaver"] = measure(inner)
        enc.terminate()
        enc.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    base_lat = results["no proxy"][1]
    print(f"ingress path, {BYTES >> 20} MiB each way (best of {ROUNDS}), {PINGS} one-byte round trips:")
    print(f"  {'path':<14} {'MB/s each way':>14} {'vs direct':>10} {'p50 us':>8} {'p99 us':>8}")
    for name, (mbps, p50, p99) in results.items():
        print(f"  {name:<14} {mbps:>14.0f} {mbps / results['direct copy'][0]:>10.2f} {p50:>8.1f} {p99:>8.1f}")
    enc = results["enclaver"]
    ratio = enc[0] / results["direct copy"][0]
    per_hop = (enc[1] - base_lat) / 2
    print(f"enclaver/direct throughput: {ratio:.2f} (budget >= 0.90)")
    if "socat" in results:
        print(f"enclaver/socat throughput: {enc[0] / results['socat'][0]:.2f} (budget > 1.00)")
    if "nginx stream" in results:
        print(f"enclaver/nginx throughput: {enc[0] / results['nginx stream'][0]:.2f}")
    print(f"added p50 latency per hop: {per_hop:.1f} us (budget < 20)")
    print(f"odyn idle RSS: {odyn_rss / 1024:.2f} MiB (budget < 4)" if odyn_rss else "odyn idle RSS: not found")
    ok = ratio >= 0.9 and ("socat" not in results or enc[0] > results["socat"][0]) and \
        odyn_rss is not None and odyn_rss < 4096
    print("bench relay:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
