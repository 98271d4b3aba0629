"""Our bulk Community ID equals the reference implementation (the communityid package)."""

from __future__ import annotations

import ipaddress

import communityid
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotwatch.addrs import format_ips
from iotwatch.communityid import OPENSSL_SHA1, community_ids

MAPPED = 0xFFFF00000000
v4 = st.integers(0, 2**32 - 1).map(lambda x: ipaddress.IPv4Address(x))
v6 = st.integers(0, 2**128 - 1).map(lambda x: ipaddress.IPv6Address(x))
port = st.integers(0, 65535)


def words(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    if a.version == 4:
        return 0, MAPPED | int(a)
    return int(a) >> 64, int(a) & (2**64 - 1)


def reference(proto: int, s, d, sp: int, dp: int) -> str:  # type: ignore[no-untyped-def]
    if proto == 1:
        t = communityid.FlowTuple.make_icmp(str(s), str(d), sp, dp)
    elif proto == 58:
        t = communityid.FlowTuple.make_icmp6(str(s), str(d), sp, dp)
    elif proto in (6, 17, 132):
        t = communityid.FlowTuple(proto, str(s), str(d), sp, dp)
    else:
        t = communityid.FlowTuple.make_ip(str(s), str(d), proto)
    return communityid.CommunityID().calc(t)  # type: ignore[no-any-return]


flows = st.one_of(
    st.tuples(st.sampled_from([6, 17, 132, 47, 50]), v4, v4, port, port),
    st.tuples(st.sampled_from([6, 17, 132, 47]), v6, v6, port, port),
    st.tuples(st.just(1), v4, v4, st.integers(0, 255), st.integers(0, 255)),
    st.tuples(st.just(58), v6, v6, st.integers(0, 255), st.integers(0, 255)),
)


# OpenSSL's SHA-1 (where libcrypto loads) and the compiled fallback
SHA1 = [pytest.param(True, id="openssl", marks=pytest.mark.skipif(not OPENSSL_SHA1, reason="no libcrypto here")),
        pytest.param(False, id="compiled")]


@pytest.mark.parametrize("openssl", SHA1)
@settings(max_examples=300, deadline=None)
@given(st.lists(flows, min_size=1, max_size=40))
def test_matches_reference(openssl: bool, batch: list[tuple]) -> None:  # type: ignore[type-arg]
    cols = list(zip(*[(s.version == 6, *words(s), *words(d), p, sp, dp) for p, s, d, sp, dp in batch], strict=True))
    got = community_ids(np.array(cols[0]), np.array(cols[1], np.uint64), np.array(cols[2], np.uint64),
                        np.array(cols[3], np.uint64), np.array(cols[4], np.uint64), np.array(cols[5], np.uint8),
                        np.array(cols[6], np.int64), np.array(cols[7], np.int64), openssl=openssl).to_pylist()
    assert got == [reference(p, s, d, sp, dp) for p, s, d, sp, dp in batch]


@pytest.mark.parametrize("openssl", SHA1)
def test_known_value_from_the_spec(openssl: bool) -> None:
    # the spec's own example: TCP 128.232.110.120:34855 -> 66.35.250.204:80
    got = community_ids(np.array([False]), np.zeros(1, np.uint64),
                        np.array([MAPPED | int(ipaddress.IPv4Address("128.232.110.120"))], np.uint64),
                        np.zeros(1, np.uint64), np.array([MAPPED | int(ipaddress.IPv4Address("66.35.250.204"))], np.uint64),
                        np.array([6], np.uint8), np.array([34855]), np.array([80]), openssl=openssl).to_pylist()
    assert got == ["1:LQU9qZlK+B5F3KDmev6m5PMibrg="]


mapped = st.integers(0, 2**32 - 1).map(lambda x: ipaddress.IPv6Address((0xFFFF << 32) | x))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(v4, v6, mapped), min_size=1, max_size=50))
def test_address_text_matches_ipaddress(addrs: list) -> None:  # type: ignore[type-arg]
    w = [words(a) for a in addrs]
    got = format_ips(np.array([a.version == 6 for a in addrs]), np.array([x[0] for x in w], np.uint64),
                     np.array([x[1] for x in w], np.uint64)).to_pylist()
    expect = []
    for a in addrs:
        if a.version == 6 and a.ipv4_mapped is not None:
            # RFC 5952 §5 writes these with a dotted quad, like Wireshark; Python 3.11 does not
            expect.append(f"::ffff:{a.ipv4_mapped}")
        else:
            expect.append(str(a))
    assert got == expect
