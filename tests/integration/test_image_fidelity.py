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


def run_enclave(d):
    return subprocess.run([str(BUILD / "enclaver-run"), "--eif-file", str(d / "app.eif"), "--manifest-file",
                           str(d / "enclaver.yaml")], capture_output=True, text=True, timeout=60)


PASSWD = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n"
GROUP = b"root:x:0:\napp:x:1000:\nextra:x:2000:other,app\nnone:x:3000:other\nmore:x:4000:app\n"


def account_image(path, user, workdir, passwd=True):
    probe = eu._probe().read_bytes()
    entries = [("bin", "d", b"", 0o755), ("bin/probe", "f", probe, 0o755), ("tmp", "d", b"", 0o1777),
               ("work", "d", b"", 0o750, {"uid": 1000, "gid": 1000}),
               ("work/data.txt", "f", b"read by a relative path\n", 0o640, {"uid": 1000, "gid": 1000})]
    if passwd:
        entries += [("etc", "d", b"", 0o755), ("etc/passwd", "f", PASSWD, 0o644), ("etc/group", "f", GROUP, 0o644),
                    ("home", "d", b"", 0o755), ("home/app", "d", b"", 0o700, {"uid": 1000, "gid": 1000})]
    image(path, [layer(entries)], Entrypoint=["/bin/probe"],
          Cmd=["seq", "id", "cat data.txt", "write /tmp/made", "write /made-at-the-root"], User=user,
          WorkingDir=workdir)


def test_user_and_workdir_as_docker_run_gives_them(tmp_path):
    """USER by name: its uid, primary group, the groups listing it (supplementary, after the
    primary one, as Docker gives them) and its home;
    WORKDIR: the app's folder, so relative paths resolve there. As root it could write anywhere;
    as the user it can write /tmp and not /."""
    account_image(tmp_path / "app.tar", "app", "/work")
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    r = build(tmp_path)
    assert r.code == 0, r
    p = run_enclave(tmp_path)
    assert p.returncode == 0, p.stderr
    assert "uid=1000 gid=1000 groups=1000,2000,4000 cwd=/work home=/home/app\n" in p.stdout, p.stdout
    assert "read by a relative path\n" in p.stdout
    assert "write /tmp/made: ok\n" in p.stdout and "write /made-at-the-root: Permission denied\n" in p.stdout


def test_user_forms_and_images_without_accounts(tmp_path):
    """user:group, numbers with and without entries (an image with only a binary has no
    /etc/passwd: a numeric USER runs as that number, in group 0, with HOME=/), and a name the
    image does not know, refused at build time in one line."""
    cases = [("app:none", True, "uid=1000 gid=3000 groups=3000 cwd=/work home=/home/app"),
             ("1000", True, "uid=1000 gid=1000 groups=1000,2000,4000 cwd=/work home=/home/app"),
             ("1000:2000", True, "uid=1000 gid=2000 groups=2000 cwd=/work home=/home/app"),
             ("4242:4343", True, "uid=4242 gid=4343 groups=4343 cwd=/work home=/"),
             ("1000", False, "uid=1000 gid=0 groups=0 cwd=/work home=/"),
             ("", False, "uid=0 gid=0 groups=0 cwd=/work home=/")]
    for i, (user, passwd, want) in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        account_image(d / "app.tar", user, "/work", passwd=passwd)
        write_manifest(d, f"docker-archive:{d}/app.tar")
        assert build(d).code == 0, user
        p = run_enclave(d)
        assert want + "\n" in p.stdout, (user, passwd, p.stdout, p.stderr)
    d = tmp_path / "unknown"
    d.mkdir()
    account_image(d / "app.tar", "nobody-here", "/work")
    write_manifest(d, f"docker-archive:{d}/app.tar")
    r = build(d)
    assert r.code == 1 and not (d / "app.eif").exists()
    errors = [line for line in r.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "USER nobody-here: no such user in the image's /etc/passwd" in errors[0], r.err
    # a missing WORKDIR is made, as Docker makes it
    d = tmp_path / "made"
    d.mkdir()
    account_image(d / "app.tar", "", "/srv/new")
    write_manifest(d, f"docker-archive:{d}/app.tar")
    assert build(d).code == 0
    assert "cwd=/srv/new home=/root\n" in run_enclave(d).stdout


def test_owners_above_65535_boot_and_keep_their_ids(tmp_path):
    """Any id an image can hold, up to 2^32-2, as a file's owner or as USER: the local enclave
    boots and stat inside shows the ids unchanged (the namespace maps each one)."""
    probe = eu._probe().read_bytes()
    top = 2**32 - 2
    image(tmp_path / "app.tar", [layer([
        ("bin", "d", b"", 0o755), ("bin/probe", "f", probe, 0o755),
        ("data", "d", b"", 0o755, {"uid": 100000}),
        ("data/a", "f", b"a", 0o644, {"uid": 70000, "gid": 70001}),
        ("data/b", "f", b"b", 0o644, {"uid": top, "gid": top}),
        ("data/c", "l", "a", 0o777, {"uid": 65536, "gid": 65535})])],
        Entrypoint=["/bin/probe"], Cmd=["seq", "stat /data /data/a /data/b", "id"], User="200000:200001")
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    assert build(tmp_path).code == 0
    p = run_enclave(tmp_path)
    assert p.returncode == 0, p.stderr
    assert "/data 755 100000 0\n" in p.stdout, p.stdout
    assert "/data/a 644 70000 70001\n" in p.stdout and f"/data/b 644 {top} {top}\n" in p.stdout, p.stdout
    assert "uid=200000 gid=200001 groups=200001 cwd=/" in p.stdout, p.stdout


def test_hard_links_stay_one_file(tmp_path):
    """Names a layer gives one file with hard links are one inode in the enclave, as Docker keeps
    them (they were separate symlinks once)."""
    probe = eu._probe().read_bytes()
    image(tmp_path / "app.tar", [layer([
        ("bin", "d", b"", 0o755), ("bin/probe", "f", probe, 0o755), ("data", "d", b"", 0o755),
        ("data/real", "f", b"one file, three names\n", 0o640, {"uid": 5, "gid": 6}),
        ("data/link", "h", "data/real", 0o640, {"uid": 5, "gid": 6}),
        ("data/sub", "d", b"", 0o755), ("data/sub/other", "h", "data/real", 0o640, {"uid": 5, "gid": 6})])],
        Entrypoint=["/bin/probe"], Cmd=["walk", "/data"])
    write_manifest(tmp_path, f"docker-archive:{tmp_path}/app.tar")
    assert build(tmp_path).code == 0
    p = run_enclave(tmp_path)
    assert p.returncode == 0, p.stderr
    rows = {f[0]: f for f in (line.split("\t") for line in p.stdout.splitlines() if line.startswith("/data/"))}
    names = ["/data/real", "/data/link", "/data/sub/other"]
    assert all(n in rows for n in names), p.stdout
    # type, mode, owner, size, links, inode: the same file three times
    assert {tuple(rows[n][1:]) for n in names} == {tuple(rows["/data/real"][1:])}, p.stdout
    assert rows["/data/real"][1:7] == ["10", "640", "5", "6", "22", "3"], rows["/data/real"]


# security.capability as setcap writes it (VFS_CAP_REVISION_2): cap_net_bind_service=+ep
NET_BIND_EP = bytes([1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])


def test_file_capabilities_are_carried(tmp_path):
    """A cap_net_bind_service=+ep binary lets a uid-1000 app bind port 80, as under docker run;
    the same binary without it cannot. Other extended attributes are named in one warning."""
    probe = eu._probe().read_bytes()
    xattr = {"pax": {"SCHILY.xattr.security.capability": NET_BIND_EP.decode("utf-8", "surrogateescape")}}
    layers = [layer([
        ("bin", "d", b"", 0o755), ("bin/probe", "f", probe, 0o755), ("bin/bound", "f", probe, 0o755, xattr),
        ("etc", "d", b"", 0o755), ("etc/note", "f", b"x", 0o644, {"pax": {"SCHILY.xattr.user.origin": "build"}})])]
    for binary, want in (("bound", "bind 80: ok"), ("probe", "bind 80: Permission denied")):
        d = tmp_path / binary
        d.mkdir()
        image(d / "app.tar", layers, Entrypoint=[f"/bin/{binary}"], Cmd=["bind", "80"], User="1000")
        write_manifest(d, f"docker-archive:{d}/app.tar")
        r = build(d)
        assert r.code == 0, r
        warnings = [line for line in r.err.splitlines() if "extended attribute" in line]
        assert len(warnings) == 1 and "user.origin on /etc/note" in warnings[0], r.err
        root = ramdisk_tree(d, d / "app.eif")
        assert (root / "etc/enclaver/capabilities").read_bytes() == (
            b"/bin/bound\0" + NET_BIND_EP.hex().encode() + b"\0\n")
        p = run_enclave(d)
        assert p.returncode == 0, p.stderr
        assert want + "\n" in p.stdout, (binary, p.stdout, p.stderr)
