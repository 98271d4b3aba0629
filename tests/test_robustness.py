"""Property-based: the readers never crash and never loop, whatever the bytes.

Mutations of real generated captures (flipped bytes, cut-offs, inserted garbage, duplicated
spans) must end with a result: every packet before the damage analysed and, for damage, a
one-line problem naming the file and a byte offset. Nothing else may escape.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from captures import classic_pcap, pcapng_multi_interface, vlan_capture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import iotwatch
from iotwatch.errors import CaptureError, InputError


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    d = tmp_path_factory.mktemp("seeds")
    caps = [classic_pcap(d), classic_pcap(d, big_endian=True, nanosecond=True), pcapng_multi_interface(d),
            vlan_capture(d)]
    return [c.path.read_bytes() for c in caps]


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def boom(*_: object) -> None:
        raise TimeoutError("reader did not finish: possible endless loop")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("dup"), st.integers(0, 10**6), st.integers(1, 200)),
    st.tuples(st.just("u32"), st.integers(0, 10**6), st.sampled_from([0, 1, 11, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])),
)


def mutate(data: bytes, muts: list[tuple]) -> bytes:  # type: ignore[type-arg]
    b = bytearray(data)
    for kind, pos, arg in muts:
        if not b:
            break
        p = pos % len(b)
        if kind == "flip":
            b[p] ^= arg or 1
        elif kind == "cut":
            del b[p:]
        elif kind == "insert":
            b[p:p] = arg
        elif kind == "dup":
            b[p:p] = b[p : p + arg]
        elif kind == "u32":
            b[p : p + 4] = arg.to_bytes(4, "little")
    return bytes(b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 3), muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_captures_never_crash_or_loop(seeds: list[bytes], tmp_path: Path, which: int, muts: list) -> None:  # type: ignore[type-arg]
    data = mutate(seeds[which], muts)
    path = tmp_path / ("m.pcapng" if which == 2 else "m.pcap")
    path.write_bytes(data)
    with deadline(30):
        try:
            a = iotwatch.analyze(path)
        except InputError as e:  # not a capture at all (header destroyed): one line naming the file
            assert str(path) in str(e) and "\n" not in str(e)
            return
    for p in a.problems:
        assert str(path) in str(p) and "\n" not in str(p)
        if isinstance(p, CaptureError):
            assert 0 <= p.offset <= len(data)
    assert a.stats.packets >= 0
    assert a.stats.bytes >= 0


def test_unmutated_seeds_have_no_problems(seeds: list[bytes], tmp_path: Path) -> None:
    for k, data in enumerate(seeds):
        path = tmp_path / f"s{k}.{'pcapng' if k == 2 else 'pcap'}"
        path.write_bytes(data)
        assert not iotwatch.analyze(path).problems
