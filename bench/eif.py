#!/usr/bin/python3
"""bench/eif: build an EIF from a large ramdisk and compare, in the same run, with sha384sum of
the same bytes. Also checks that the builder's peak memory does not grow with the ramdisk.

Prints the time ratio (budget <= 1.3) and the peak RSS of a small and a large build. Files live
on tmpfs (BENCH_DIR, default /dev/shm) so that the disk's writeback does not decide the result."""
import os
import pathlib
import subprocess
import sys
import tempfile
import time

BUDGET = 1.3
SIZE_MB = int(os.environ.get("BENCH_EIF_MB", "1024"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def timed(cmd):
    os.sync()  # no writeback left over from an earlier run lands in this one
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def peak_rss_kib(cmd):
    """Peak RSS of one run, read from its own wait4() rusage."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    assert status == 0, cmd
    return ru.ru_maxrss


def make_file(path, mb):
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for i in range(mb):
            f.write(chunk[i % 7:] + chunk[:i % 7])


def main():
    build = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build")
    enclaver = str(build / "enclaver")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/dev/shm")) as d:
        d = pathlib.Path(d)
        kernel, big, small, out = d / "kernel", d / "big.img", d / "small.img", d / "out.eif"
        kernel.write_bytes(os.urandom(8 << 20))
        make_file(big, SIZE_MB)
        make_file(small, 16)
        build_cmd = lambda r: [enclaver, "eif", "build", "--kernel", str(kernel), "--cmdline", "console=ttyS0",
                               "--ramdisk", str(r), "-o", str(out)]
        sha_cmd = ["sha384sum", str(big)]
        timed(sha_cmd)  # warm the page cache
        t_sha = [timed(sha_cmd) for _ in range(ROUNDS)]
        # Builds back to back, each replacing the last output: the steady state of a build loop.
        # (On these VMs memory freed and left idle for a second or two is handed back to the
        # hypervisor, and touching it again costs more than the build's own work; that is the
        # machine's cost, not the builder's, and sha384sum writes nothing to pay it.)
        timed(build_cmd(big))
        t_eif = []
        for _ in range(ROUNDS):
            out.unlink()
            t_eif.append(timed(build_cmd(big)))
        out.unlink()
        ratio = min(t_eif) / min(t_sha)
        rss_small = peak_rss_kib(build_cmd(small))
        rss_big = peak_rss_kib(build_cmd(big))
    print(f"eif build of a {SIZE_MB} MiB ramdisk: {min(t_eif):.3f} s; sha384sum of the same bytes: "
          f"{min(t_sha):.3f} s (best of {ROUNDS})")
    print(f"ratio eif-build/sha384sum: {ratio:.2f} (budget <= {BUDGET})")
    print(f"peak RSS: {rss_small / 1024:.1f} MiB for 16 MiB, {rss_big / 1024:.1f} MiB for {SIZE_MB} MiB "
          f"(ratio {rss_big / rss_small:.2f}, budget <= 1.10)")
    ok = ratio <= BUDGET and rss_big <= rss_small * 1.10
    print("bench eif:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
