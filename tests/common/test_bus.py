"""Redis bus on a real Redis: pub/sub, stream replay, ops flags, fail-safe reads, halt latency."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest
from pairdesk.common.bus import (
    BusNames,
    HaltLevel,
    OpsFlags,
    SignalBus,
    create_redis,
    decode_flags,
    encode_flags,
)
from pairdesk.common.testing import RedisTestHandle


def _signal(i: int) -> dict[str, object]:
    return {
        "pair_id": "XAUUSD_XAGUSD",
        "ts_utc": f"2025-10-01T{i % 24:02d}:00:00Z",
        "seq": i,
        "z": round(0.01 * i - 2.0, 5),
        "action": "hold",
    }


def test_names_default_to_the_spec_and_namespace_prefixes_everything() -> None:
    plain = BusNames()
    assert (plain.signals_channel, plain.signals_stream, plain.ops_flags) == (
        "signals",
        "signals:stream",
        "core:ops:flags",
    )
    ns = BusNames("t1")
    assert ns.signals_stream == "t1:signals:stream"
    assert ns.ops_flags == "t1:core:ops:flags"
    assert ns.flags_changed_channel == "t1:core:ops:flags:changed"


def test_pubsub_delivers_every_signal_in_order_with_its_stream_id(
    redis_client: RedisTestHandle,
) -> None:
    async def run() -> None:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace)
            async with bus.subscribe_signals() as sub:
                ids = [await bus.publish_signal(_signal(i)) for i in range(20)]
                got = [await sub.get(timeout_s=2.0) for _ in ids]
                assert await sub.get(timeout_s=0.05) is None
            assert [m.payload["seq"] for m in got if m] == list(range(20))
            assert [m.stream_id for m in got if m] == ids
            # the stream already holds what the subscriber saw
            replay = await bus.read_signals("0-0")
            assert [e.id for e in replay] == ids

    asyncio.run(run())


def test_stream_replay_from_an_id_loses_nothing(redis_client: RedisTestHandle) -> None:
    """A consumer that stops after message 10 and replays from its last id gets 11..N exactly."""

    async def run() -> None:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace)
            ids = [await bus.publish_signal(_signal(i)) for i in range(60)]
            first = await bus.read_signals("0-0", count=11)
            assert [e.payload["seq"] for e in first] == list(range(11))
            last_seen = first[-1].id
            rest = await bus.replay_signals(last_seen, batch=7)  # several batches
            assert [e.payload["seq"] for e in rest] == list(range(11, 60))
            assert [e.id for e in first + rest] == ids
            assert [e.payload for e in first + rest] == [_signal(i) for i in range(60)]
            # ids are strictly increasing and nothing is newer than the last one
            parsed = [tuple(map(int, i.split("-"))) for i in ids]
            assert parsed == sorted(set(parsed))
            assert await bus.read_signals(ids[-1]) == []

    asyncio.run(run())


def test_stream_is_capped_by_maxlen(redis_client: RedisTestHandle) -> None:
    async def run() -> int:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace, stream_maxlen=10)
            for i in range(600):
                await bus.publish_signal(_signal(i))
            return int(await r.xlen(bus.names.signals_stream))

    # approximate trimming removes whole stream nodes (100 entries by default)
    length = asyncio.run(run())
    assert 10 <= length < 600
    with pytest.raises(ValueError, match="stream_maxlen must be positive"):
        SignalBus(create_redis("redis://127.0.0.1:1/0"), stream_maxlen=0)


def test_unserialisable_signal_is_rejected_before_anything_is_written(
    redis_client: RedisTestHandle,
) -> None:
    async def run() -> int:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace)
            with pytest.raises(ValueError, match="Out of range float"):
                await bus.publish_signal({"z": float("nan")})
            return int(await r.exists(bus.names.signals_stream))

    assert asyncio.run(run()) == 0


def test_flags_defaults_and_round_trip(redis_client: RedisTestHandle) -> None:
    async def run() -> None:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace)
            assert await bus.get_flags() == OpsFlags()  # absent hash = nothing halted
            written = await bus.set_flags(
                OpsFlags(
                    global_halt=HaltLevel.SOFT,
                    halted_pairs=frozenset({"XAUUSD_XAGUSD"}),
                    flatten_pairs=frozenset({"BTCUSDT_ETHUSDT"}),
                    leverage_scale=0.5,
                ),
                updated_by="alice",
            )
            back = await bus.get_flags()
            assert back == written
            assert back.updated_by == "alice"
            assert back.global_halt is HaltLevel.SOFT
            raw = await r.hgetall(bus.names.ops_flags)
            assert raw["global_halt"] == "soft"
            assert json.loads(raw["halted_pairs"]) == ["XAUUSD_XAGUSD"]
            assert float(raw["leverage_scale"]) == 0.5

            f = await bus.set_global_halt("hard", updated_by="bob")
            assert (f.global_halt, f.leverage_scale, f.updated_by) == (HaltLevel.HARD, 0.5, "bob")
            f = await bus.set_pairs(halted=["A_B"], flatten=["C_D"])
            assert f.halted_pairs == {"XAUUSD_XAGUSD", "A_B"}
            assert f.flatten_pairs == {"BTCUSDT_ETHUSDT", "C_D"}
            f = await bus.set_pairs(halted=["XAUUSD_XAGUSD"], add=False)
            assert f.halted_pairs == {"A_B"}
            f = await bus.set_leverage_scale(0.25)
            assert f.leverage_scale == 0.25
            f = await bus.set_global_halt(HaltLevel.NONE)
            assert f.is_pair_blocked("A_B")
            assert f.is_pair_blocked("C_D")
            assert not f.is_pair_blocked("XAUUSD_XAGUSD")
            assert await bus.get_flags() == f

    asyncio.run(run())


def _adder(pair: str) -> Callable[[OpsFlags], OpsFlags]:
    return lambda f: replace(f, halted_pairs=f.halted_pairs | {pair})


def test_concurrent_flag_updates_are_not_lost(redis_client: RedisTestHandle) -> None:
    async def run() -> OpsFlags:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace)
            pairs = [f"P{i}_Q{i}" for i in range(15)]
            await asyncio.gather(
                *(
                    bus.update_flags(
                        _adder(p),
                        updated_by=p,
                        max_attempts=100,
                    )
                    for p in pairs
                ),
                bus.set_pairs(flatten=["Z_Y"]),
            )
            return await bus.get_flags()

    flags = asyncio.run(run())
    assert flags.halted_pairs == {f"P{i}_Q{i}" for i in range(15)}
    assert flags.flatten_pairs == {"Z_Y"}


def test_flags_validation() -> None:
    with pytest.raises(ValueError, match=r"leverage_scale must be in \[0, 1\]"):
        OpsFlags(leverage_scale=1.5)
    with pytest.raises(ValueError, match=r"leverage_scale must be in \[0, 1\]"):
        OpsFlags(leverage_scale=float("nan"))
    with pytest.raises(ValueError, match="'paused' is not a valid HaltLevel"):
        decode_flags({"global_halt": "paused"})
    with pytest.raises(ValueError, match="halted_pairs must be a JSON list of strings"):
        decode_flags({"halted_pairs": '{"a": 1}'})
    with pytest.raises(ValueError, match="invalid ops flags hash"):
        decode_flags({"flatten_pairs": "[not json"})
    f = OpsFlags(HaltLevel.SOFT, frozenset({"B", "A"}), frozenset(), 0.1)
    assert encode_flags(f)["halted_pairs"] == '["A", "B"]'
    assert decode_flags(encode_flags(f)) == f
    assert decode_flags({b"global_halt": b"hard"}).global_halt is HaltLevel.HARD


def test_failsafe_reader_reports_invalid_flags_as_unknown(redis_client: RedisTestHandle) -> None:
    async def run() -> None:
        async with redis_client.client() as r:
            bus = SignalBus(r, namespace=redis_client.namespace)
            ok = await bus.read_flags_failsafe()
            assert (ok.status, ok.flags) == ("ok", OpsFlags())
            await r.hset(bus.names.ops_flags, mapping={"leverage_scale": "7"})
            bad = await bus.read_flags_failsafe()
            assert (bad.status, bad.flags) == ("unknown", None)
            assert bad.error is not None
            assert "leverage_scale" in bad.error

    asyncio.run(run())


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections (backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("which", ["closed_port", "silent_server"])
def test_failsafe_reader_returns_unknown_within_its_timeout(
    which: str, request: pytest.FixtureRequest
) -> None:
    port = request.getfixturevalue(which)
    timeout_s = 0.3

    async def run() -> tuple[str, str | None, float, float]:
        client = create_redis(
            f"redis://127.0.0.1:{port}/0", socket_timeout_s=10, connect_timeout_s=10
        )
        bus = SignalBus(client)
        t0 = time.perf_counter()
        reading = await bus.read_flags_failsafe(timeout_s=timeout_s)
        wall = time.perf_counter() - t0
        await client.aclose()
        return reading.status, reading.error, reading.elapsed_s, wall

    status, error, elapsed, wall = asyncio.run(run())
    assert status == "unknown"
    assert error
    # The deadline comes from read_flags_failsafe itself (client timeouts are 10 s here).
    # Bound generously: this checks "returns at its deadline", not speed.
    assert elapsed <= wall < timeout_s + 5.0
    if which == "silent_server":
        assert "Timeout" in error


def test_halt_is_seen_by_a_subscriber_and_report_latency(
    redis_client: RedisTestHandle, record_property: Callable[[str, object], None]
) -> None:
    n = 200

    async def run() -> list[float]:
        async with redis_client.client() as r, redis_client.client() as r_sub:
            writer = SignalBus(r, namespace=redis_client.namespace)
            reader = SignalBus(r_sub, namespace=redis_client.namespace)
            latencies: list[float] = []
            async with reader.subscribe_flags() as sub:
                for i in range(n):
                    level = HaltLevel.HARD if i % 2 else HaltLevel.SOFT
                    t0 = time.perf_counter()
                    await writer.set_global_halt(level, updated_by="ops")
                    seen = await sub.get(timeout_s=5.0)
                    latencies.append(time.perf_counter() - t0)
                    assert seen is not None
                    assert seen.global_halt is level
                    assert seen.updated_by == "ops"
                assert await sub.get(timeout_s=0.05) is None
            return latencies

    lat_ms = np.array(asyncio.run(run())) * 1000.0
    p50, p99 = np.percentile(lat_ms, [50, 99])
    record_property("halt_latency_p50_ms", round(float(p50), 3))
    record_property("halt_latency_p99_ms", round(float(p99), 3))
    print(f"\nhalt write->subscriber latency over {n}: p50={p50:.3f} ms p99={p99:.3f} ms")
    assert lat_ms.size == n
