"""Independent reference implementations from spec/nitro.md Appendix A (EIF, PCRs, gocpio),
used as oracles for the C code."""
import hashlib
import struct
import zlib

HDR_SIZE, SEC_HDR = 548, 12
KERNEL, CMDLINE, RAMDISK, SIGNATURE, METADATA = 1, 2, 3, 4, 5


def eif_header(version, flags, mem, cpus, offs, szs, crc):
    o = list(offs) + [0] * (32 - len(offs))
    s = list(szs) + [0] * (32 - len(szs))
    return (b".eif" + struct.pack(">HHQQHH", version, flags, mem, cpus, 0, len(offs))
            + struct.pack(">32Q", *o) + struct.pack(">32Q", *s) + struct.pack(">II", 0, crc))


def build_eif(kernel, cmdline, ramdisks, metadata, flags=0, signature=None):
    secs = [(KERNEL, kernel), (CMDLINE, cmdline), (METADATA, metadata)] + [(RAMDISK, r) for r in ramdisks]
    if signature is not None:
        secs.append((SIGNATURE, signature))
    offs, szs, pos = [], [], HDR_SIZE
    for t, d in secs:
        offs.append(pos)
        szs.append(len(d))
        pos += SEC_HDR + len(d)
    body = b"".join(struct.pack(">HHQ", t, 0, len(d)) + d for t, d in secs)
    h0 = eif_header(4, flags, 1 << 30, 2, offs, szs, 0)
    crc = zlib.crc32(body, zlib.crc32(h0[:-4])) & 0xffffffff
    return eif_header(4, flags, 1 << 30, 2, offs, szs, crc) + body


def extend0(digest):
    return hashlib.sha384(b"\0" * 48 + digest).digest()


def pcr_of(data):
    return extend0(hashlib.sha384(data).digest()).hex()


def sections(b):
    n = struct.unpack(">H", b[26:28])[0]
    offs = struct.unpack(">32Q", b[28:284])
    out = []
    for i in range(n):
        t, f, s = struct.unpack(">HHQ", b[offs[i]:offs[i] + 12])
        out.append((t, b[offs[i] + 12:offs[i] + 12 + s]))
    return out


def eif_pcrs(b):
    h0, h1, h2 = hashlib.sha384(), hashlib.sha384(), hashlib.sha384()
    ri = 0
    for t, d in sections(b):
        if t in (KERNEL, CMDLINE):
            h0.update(d)
            h1.update(d)
        elif t == RAMDISK:
            h0.update(d)
            (h1 if ri == 0 else h2).update(d)
            ri += 1
    return dict(PCR0=extend0(h0.digest()).hex(), PCR1=extend0(h1.digest()).hex(),
                PCR2=extend0(h2.digest()).hex())


def fix_crc(b):
    """Recomputes the header CRC after an edit, as a forger would."""
    b = bytearray(b)
    crc = zlib.crc32(bytes(b[HDR_SIZE:]), zlib.crc32(bytes(b[:HDR_SIZE - 4]))) & 0xffffffff
    b[HDR_SIZE - 4:HDR_SIZE] = struct.pack(">I", crc)
    return bytes(b)


class Cpio:  # surma/gocpio @fcb6877 as used by linuxkit
    def __init__(s):
        s.buf = bytearray()
        s.ino = 721

    def _pad(s, m):
        s.buf += b"\0" * ((m - len(s.buf) % m) % m)

    def add(s, name, perm, ftype, data=b"", mtime=0, uid=0, gid=0):
        s._pad(4)
        nb = name.encode()
        f = (s.ino, (perm & 0xFFF) | (ftype << 12), uid, gid, 2 if ftype == 0o04 else 1, mtime, len(data),
             3, 1, 0, 0, len(nb) + 1, 0)
        s.buf += ("070701" + "".join("%08x" % v for v in f)).encode() + nb + b"\0"
        s.ino += 1
        s._pad(4)
        s.buf += data

    def close(s):
        s.add("TRAILER!!!", 0, 0)
        s._pad(512)
        return bytes(s.buf)


LINUXKIT_MTIME = 1492533000


def bootstrap_ramdisk(init, nsm):
    c = Cpio()
    c.add("dev", 0o755, 0o04, mtime=LINUXKIT_MTIME)
    c.add("init", 0o755, 0o10, init, mtime=LINUXKIT_MTIME)
    if nsm is not None:
        c.add("nsm.ko", 0o755, 0o10, nsm, mtime=LINUXKIT_MTIME)
    return c.close()


T9_CMDLINE = (b"reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux i8042.nomux i8042.nopnp "
              b"i8042.dumbkbd random.trust_cpu=on")
T9_SHA256 = "90c9d9fb65e6bfbf013152fc97a2d624a1c0346e304ed40033579ab6af840acb"
T9_PCRS = dict(
    PCR0="e3a4f4f08c4334664bd28652a26b6ec0a706fc115805afaa1e3173d8e4cd7f92bd6df7044cb20a12d0f604efe192ed7a",
    PCR1="ba2ec7008d92037ea38243fcc2716458eb186470783841963817169d2bf71572973d76f4e5d299b2fa1749ac0d83695a",
    PCR2="fa08795798395f869e1fb2844156b1ed65023bcf2348f120505516de09cb5b251b77f88e804df1860634e3f53f22aadd",
)
