"""An image's files reach the enclave as Docker gives them to a container: what the build adds
never changes what the image has. Built from daemonless image sources (docker-archive), checked
in the EIF's ramdisk and inside a running local enclave."""
import os
import subprocess

from conftest import BUILD, run
import enclave_util as eu
from test_build import CONFIG, build, mkimage, layer, write_manifest


def image(path, layers, **config):
    mkimage.docker_archive(path, layers, dict(CONFIG, config=dict(CONFIG["config"], **config)))


def ramdisk_tree(d, eif):
    """The EIF's application ramdisk unpacked (as root, owners kept) into d/x."""
    assert run("eif", "extract", eif, "--ramdisk", "1", "-o", d / "r1").code == 0
    x = d / "x"
    x.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=(d / "r1").read_bytes(), cwd=x,
                   check=True)
    return x / "rootfs"


def test_the_build_keeps_the_image_folders(tmp_path):
    """The mount points the build adds (linuxkit's dev, run, sys, var, proc, tmp) are added only
    where the image has none: an image's /tmp keeps its mode and owner, in the EIF and, as the
    folder the enclave's /tmp mount takes after, inside the enclave."""
    probe = eu._probe().read_bytes()
    image(tmp_path / "app.tar", [layer([
        ("bin", "d", b"", 0o755), ("bin/probe", "f", probe, 0o755),
        ("tmp", "d", b"", 0o1770, {"gid": 1000}), ("var", "d", b"", 0o700, {"uid": 7}),
        ("var/lib", "d", b"", 0o755)])],
        Entrypoint=["/bin/probe"], Cmd=["stat", "/tmp", "/var", "/run"])
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    assert build(tmp_path).code == 0
    root = ramdisk_tree(tmp_path, tmp_path / "app.eif")
    st = os.lstat(root / "tmp")
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (oct(0o1770), 0, 1000)
    st = os.lstat(root / "var")
    assert (oct(st.st_mode & 0o7777), st.st_uid) == (oct(0o700), 7)
    # what the image lacks is still there for the enclave's mounts
    for d in ("dev", "run", "sys", "proc"):
        assert (root / d).is_dir(), d
    p = subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(tmp_path / "app.eif"), "--manifest-file",
                        str(tmp_path / "enclaver.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "/tmp 1770 0 1000\n" in p.stdout and "/var 700 7 0\n" in p.stdout, p.stdout
