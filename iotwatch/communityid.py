"""Community ID v1 (https://github.com/corelight/community-id-spec), computed in bulk.

Flows leave the table by the hundred thousand under a flood, so the hash runs as a compiled
loop over arrays (one SHA-1 block per flow) rather than one ``hashlib`` call per flow. The block
itself goes to OpenSSL's ``SHA1_Transform`` (the libcrypto that Python's ``hashlib`` is built on,
which uses the CPU's SHA instructions: 30 ns a flow instead of 200 ns for the compiled SHA-1
below, which stays as the fallback where no libcrypto can be loaded). The test suite checks both
against the reference implementation (the ``communityid`` package).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pyarrow as pa

from ._jit import external, inline_kernel, kernel


def _openssl_sha1_transform() -> int | None:
    """The address of libcrypto's ``SHA1_Transform`` in this process (None: no libcrypto). The
    kernels call it by a name (``iotwatch_sha1_transform``, bound by :func:`iotwatch._jit.external`)
    that the cached machine code refers to: the address changes from run to run, the name does not."""
    global _libcrypto
    names = [ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.dylib"]
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
            fn = lib.SHA1_Transform
        except (OSError, AttributeError):
            continue
        _libcrypto = lib  # kept loaded for the life of the process
        return ctypes.cast(fn, ctypes.c_void_p).value
    return None


_libcrypto: ctypes.CDLL | None = None

_SHA1_ADDRESS = _openssl_sha1_transform()
#: whether SHA-1 blocks go to OpenSSL (False: the compiled SHA-1 below)
OPENSSL_SHA1 = _SHA1_ADDRESS is not None
_sha1_transform = external("iotwatch_sha1_transform", "void(voidptr, voidptr)", _SHA1_ADDRESS)

# ICMP / ICMPv6 message types that pair up as request/response (Zeek's mapping, as in the spec)
_ICMP4 = np.full(256, -1, np.int64)
for a, b in ((8, 0), (13, 14), (15, 16), (10, 9), (17, 18)):
    _ICMP4[a], _ICMP4[b] = b, a
_ICMP6 = np.full(256, -1, np.int64)
for a, b in ((128, 129), (130, 131), (133, 134), (135, 136), (139, 140), (144, 145)):
    _ICMP6[a], _ICMP6[b] = b, a
LINE = 30  # "1:" + 28 base64 characters
_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)


@inline_kernel
def _rotl(x, n):  # type: ignore[no-untyped-def]
    return ((x << np.uint32(n)) | (x >> np.uint32(32 - n))) & np.uint32(0xFFFFFFFF)


@inline_kernel
def _sha1_block(msg, mlen, w, out):  # type: ignore[no-untyped-def]
    """SHA-1 of msg[:mlen] (mlen <= 55: one block). Writes 20 bytes into out."""
    _pad(msg, mlen)
    for t in range(16):
        w[t] = (np.uint32(msg[4 * t]) << np.uint32(24)) | (np.uint32(msg[4 * t + 1]) << np.uint32(16)) | (
            np.uint32(msg[4 * t + 2]) << np.uint32(8)) | np.uint32(msg[4 * t + 3])
    for t in range(16, 80):
        w[t] = _rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1)
    h0 = np.uint32(0x67452301)
    h1 = np.uint32(0xEFCDAB89)
    h2 = np.uint32(0x98BADCFE)
    h3 = np.uint32(0x10325476)
    h4 = np.uint32(0xC3D2E1F0)
    a, b, c, d, e = h0, h1, h2, h3, h4
    mask = np.uint32(0xFFFFFFFF)
    for t in range(20):  # four loops without branches: the compiler unrolls and schedules them
        tmp = (_rotl(a, 5) + ((b & c) | (~b & d)) + e + np.uint32(0x5A827999) + w[t]) & mask
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(tmp)
    for t in range(20, 40):
        tmp = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint32(0x6ED9EBA1) + w[t]) & mask
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(tmp)
    for t in range(40, 60):
        tmp = (_rotl(a, 5) + ((b & c) | (b & d) | (c & d)) + e + np.uint32(0x8F1BBCDC) + w[t]) & mask
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(tmp)
    for t in range(60, 80):
        tmp = (_rotl(a, 5) + (b ^ c ^ d) + e + np.uint32(0xCA62C1D6) + w[t]) & mask
        e, d, c, b, a = d, c, _rotl(b, 30), a, np.uint32(tmp)
    hs = ((h0 + a) & np.uint32(0xFFFFFFFF), (h1 + b) & np.uint32(0xFFFFFFFF), (h2 + c) & np.uint32(0xFFFFFFFF),
          (h3 + d) & np.uint32(0xFFFFFFFF), (h4 + e) & np.uint32(0xFFFFFFFF))
    for j in range(5):
        _word_bytes(out, j, hs[j])


@inline_kernel
def _word_bytes(out, j, v):  # type: ignore[no-untyped-def]
    """Word j of a digest, big-endian, into out[4j:4j+4]."""
    out[4 * j] = (v >> np.uint32(24)) & np.uint32(0xFF)
    out[4 * j + 1] = (v >> np.uint32(16)) & np.uint32(0xFF)
    out[4 * j + 2] = (v >> np.uint32(8)) & np.uint32(0xFF)
    out[4 * j + 3] = v & np.uint32(0xFF)


@inline_kernel
def _put_addr(msg, p, v6, hi, lo):  # type: ignore[no-untyped-def]
    if v6:
        for k in range(8):
            msg[p + k] = (hi >> np.uint64(56 - 8 * k)) & np.uint64(0xFF)
            msg[p + 8 + k] = (lo >> np.uint64(56 - 8 * k)) & np.uint64(0xFF)
        return p + 16
    for k in range(4):
        msg[p + k] = (lo >> np.uint64(24 - 8 * k)) & np.uint64(0xFF)
    return p + 4


@inline_kernel
def _pad(msg, mlen):  # type: ignore[no-untyped-def]
    """SHA-1 padding of msg[:mlen] (mlen <= 55) to one 64-byte block."""
    for k in range(mlen, 64):
        msg[k] = 0
    msg[mlen] = 0x80
    bits = mlen * 8
    msg[62] = (bits >> 8) & 0xFF
    msg[63] = bits & 0xFF


@inline_kernel
def _message(msg, i, v6, shi, slo, dhi, dlo, proto, sport, dport, seed, icmp4, icmp6):  # type: ignore[no-untyped-def]
    """The spec's hash input of flow i into msg; returns its length."""
    pr = np.int64(proto[i])
    sp = np.int64(sport[i])
    dp = np.int64(dport[i])
    ports = pr == 6 or pr == 17 or pr == 132 or pr == 1 or pr == 58
    one_way = False
    if pr == 1 or pr == 58:
        table = icmp4 if pr == 1 else icmp6
        m = table[sp & 0xFF]
        if m >= 0:
            dp = m
        else:
            one_way = True
    sh, sl, dh, dl = shi[i], slo[i], dhi[i], dlo[i]
    ordered = one_way or (sh < dh) or (sh == dh and sl < dl) or (sh == dh and sl == dl and sp <= dp)
    if not ordered:
        sh, sl, dh, dl = dh, dl, sh, sl
        sp, dp = dp, sp
    msg[0] = (seed >> 8) & 0xFF
    msg[1] = seed & 0xFF
    p = _put_addr(msg, 2, v6[i], sh, sl)
    p = _put_addr(msg, p, v6[i], dh, dl)
    msg[p] = pr
    msg[p + 1] = 0
    p += 2
    if ports:
        msg[p] = (sp >> 8) & 0xFF
        msg[p + 1] = sp & 0xFF
        msg[p + 2] = (dp >> 8) & 0xFF
        msg[p + 3] = dp & 0xFF
        p += 4
    return p


@inline_kernel
def _base64_id(dig, o, b64):  # type: ignore[no-untyped-def]
    """"1:" + base64 of the 20-byte digest (dig[20] must be 0) into o."""
    dig[20] = 0
    o[0] = 49  # "1"
    o[1] = 58  # ":"
    q = 2
    for j in range(0, 21, 3):
        v = (np.int64(dig[j]) << 16) | (np.int64(dig[j + 1]) << 8) | np.int64(dig[j + 2])
        o[q] = b64[(v >> 18) & 63]
        o[q + 1] = b64[(v >> 12) & 63]
        if j < 18:
            o[q + 2] = b64[(v >> 6) & 63]
            o[q + 3] = b64[v & 63]
        else:  # 20 bytes → 27 characters + one "=" of padding
            o[q + 2] = b64[(v >> 6) & 63]
            o[q + 3] = 61
        q += 4


@kernel
def _community_ids(v6, shi, slo, dhi, dlo, proto, sport, dport, seed, icmp4, icmp6, msg, w, dig, b64, out):  # type: ignore[no-untyped-def]
    for i in range(v6.shape[0]):
        p = _message(msg, i, v6, shi, slo, dhi, dlo, proto, sport, dport, seed, icmp4, icmp6)
        _sha1_block(msg, p, w, dig)
        _base64_id(dig, out[i], b64)


@kernel
def _community_ids_openssl(v6, shi, slo, dhi, dlo, proto, sport, dport, seed, icmp4, icmp6, msg, ctx, dig, b64,  # type: ignore[no-untyped-def]
                           out):
    """As _community_ids, with OpenSSL's SHA1_Transform on the block (ctx: a SHA_CTX's room,
    whose first five words are the hash state)."""
    for i in range(v6.shape[0]):
        p = _message(msg, i, v6, shi, slo, dhi, dlo, proto, sport, dport, seed, icmp4, icmp6)
        _pad(msg, p)
        ctx[0] = np.uint32(0x67452301)
        ctx[1] = np.uint32(0xEFCDAB89)
        ctx[2] = np.uint32(0x98BADCFE)
        ctx[3] = np.uint32(0x10325476)
        ctx[4] = np.uint32(0xC3D2E1F0)
        _sha1_transform(ctx.ctypes.data, msg.ctypes.data)
        for j in range(5):
            _word_bytes(dig, j, ctx[j])
        _base64_id(dig, out[i], b64)


def community_ids(v6: np.ndarray, src_hi: np.ndarray, src_lo: np.ndarray, dst_hi: np.ndarray, dst_lo: np.ndarray,
                  proto: np.ndarray, sport: np.ndarray, dport: np.ndarray, seed: int = 0, *,
                  openssl: bool = True) -> pa.Array:
    """Community IDs (v1, base64) of many flows at once, as a pyarrow string array.

    Addresses use iotwatch's two-word layout (IPv4 in the low 32 bits of ``lo``). For ICMP and
    ICMPv6, ``sport``/``dport`` are the message type and code. ``openssl=False`` uses the
    compiled SHA-1 even where OpenSSL's is available (the tests check both).
    """
    n = len(v6)
    out = np.empty((n, LINE), np.uint8)
    args = (np.asarray(v6, np.bool_), src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, seed, _ICMP4, _ICMP6,
            np.zeros(64, np.uint8))
    if OPENSSL_SHA1 and openssl:
        _community_ids_openssl(*args, np.zeros(32, np.uint32), np.zeros(21, np.uint8), _B64, out)  # SHA_CTX: 96 bytes
    else:
        _community_ids(*args, np.zeros(80, np.uint32), np.zeros(21, np.uint8), _B64, out)
    offsets = np.arange(0, (n + 1) * LINE, LINE, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.reshape(-1))])
