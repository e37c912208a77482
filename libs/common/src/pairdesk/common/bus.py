"""Redis messaging: signals (pub/sub + replayable stream) and the ops flags hash.

Names (spec 004 §システム構成 通信層, §運用Runbook ランタイムフラグ; DESIGN.md §1):

- pub/sub channel ``signals`` — live fan-out of every signal;
- stream ``signals:stream`` — the same signals, capped with ``MAXLEN ~ maxlen``, readable from
  any id so a consumer that was down can replay what it missed;
- hash ``core:ops:flags`` — ``{global_halt: none|soft|hard, halted_pairs, flatten_pairs,
  leverage_scale}`` enforced by inference; every change is also announced on the pub/sub channel
  ``core:ops:flags:changed``.

A ``namespace`` prefix (``"<ns>:"``) can be put in front of every key and channel; production
uses none. Tests use it for isolation, because pub/sub channels are shared by all Redis
database numbers.

Publishing order: a signal is first appended to the stream (durable, gets an id) and then
published with that id, so anything a subscriber sees is already replayable and a subscriber
can detect a gap by comparing ids.

Nothing connects at import time; :func:`create_redis` builds a client lazily.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, WatchError

__all__ = [
    "FLAGS_CHANGED_CHANNEL",
    "OPS_FLAGS_KEY",
    "SIGNALS_CHANNEL",
    "SIGNALS_STREAM",
    "BusNames",
    "FlagsReading",
    "HaltLevel",
    "OpsFlags",
    "SignalBus",
    "SignalMessage",
    "StreamEntry",
    "Subscription",
    "create_redis",
    "decode_flags",
    "encode_flags",
]

SIGNALS_CHANNEL = "signals"
SIGNALS_STREAM = "signals:stream"
OPS_FLAGS_KEY = "core:ops:flags"
FLAGS_CHANGED_CHANNEL = "core:ops:flags:changed"
#: Pub/sub channel announcing newly stored closed bars (the bars themselves live in PostgreSQL
#: ``canonical_bars``; consumers read them by watermark, so a lost notice loses no bar).
BARS_CLOSED_CHANNEL = "bars:closed"
#: Hash pair_id → JSON of the live per-pair risk metrics core_inference maintains (drawdown,
#: rolling correlation...), read by the ops resume guards (spec 004 §運用Runbook 再開手順).
PAIR_METRICS_KEY = "core:pair_metrics"
#: Hash timeframe → JSON θ1/θ2 override written by ops rollback of θ (spec 004 §運用Runbook
#: ロールバック), read by core_inference while its ``applies_to_model_version`` is active.
OPS_THETA_KEY = "core:ops:theta"

T = TypeVar("T")

#: Default cap of ``signals:stream`` (approximate trimming, ``XADD MAXLEN ~``).
DEFAULT_STREAM_MAXLEN = 100_000


def create_redis(
    url: str,
    *,
    socket_timeout_s: float = 2.0,
    connect_timeout_s: float = 2.0,
    **kwargs: Any,
) -> aioredis.Redis:
    """Create a ``redis.asyncio`` client (string responses; no connection is opened yet).

    Parameters
    ----------
    url : str
        ``redis://host:6379/0`` (spec 004 ``REDIS_URL``), ``rediss://`` or ``unix:///path``.
    socket_timeout_s, connect_timeout_s : float
        Per-command and connect timeouts in seconds, so a dead server cannot hang a caller.
    **kwargs
        Passed to :meth:`redis.asyncio.Redis.from_url`.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        **kwargs,
    )


@dataclass(frozen=True)
class BusNames:
    """Concrete key/channel names, optionally behind a namespace prefix."""

    namespace: str = ""

    def _key(self, name: str) -> str:
        return f"{self.namespace}:{name}" if self.namespace else name

    @property
    def signals_channel(self) -> str:
        """Pub/sub channel of live signals."""
        return self._key(SIGNALS_CHANNEL)

    @property
    def signals_stream(self) -> str:
        """Stream holding the replayable signal history."""
        return self._key(SIGNALS_STREAM)

    @property
    def ops_flags(self) -> str:
        """Hash with the ops runtime flags."""
        return self._key(OPS_FLAGS_KEY)

    @property
    def ops_theta(self) -> str:
        """Hash of θ overrides per timeframe (ops rollback of θ)."""
        return self._key(OPS_THETA_KEY)

    @property
    def pair_metrics(self) -> str:
        """Hash of live per-pair risk metrics (JSON per pair_id)."""
        return self._key(PAIR_METRICS_KEY)

    @property
    def bars_closed_channel(self) -> str:
        """Pub/sub channel announcing newly stored closed bars."""
        return self._key(BARS_CLOSED_CHANNEL)

    @property
    def flags_changed_channel(self) -> str:
        """Pub/sub channel announcing every flags change."""
        return self._key(FLAGS_CHANGED_CHANNEL)


class HaltLevel(StrEnum):
    """``global_halt`` values (spec 004 §運用Runbook 停止レベル)."""

    NONE = "none"
    SOFT = "soft"  # no new entries; existing positions kept
    HARD = "hard"  # signal generation stopped


@dataclass(frozen=True)
class OpsFlags:
    """The ops runtime flags (``core:ops:flags``).

    Attributes
    ----------
    global_halt : HaltLevel
        Portfolio-wide halt level.
    halted_pairs : frozenset of str
        Pairs with new entries halted.
    flatten_pairs : frozenset of str
        Pairs to be flattened (positions closed).
    leverage_scale : float
        Position-size multiplier in ``[0, 1]`` (fraction, 1.0 = full size), shrunk per
        ``dd_policy.yaml`` under a soft halt.
    updated_at : float or None
        Unix time (seconds, UTC) of the last write, set by the writer.
    updated_by : str or None
        Who made the last change.

    Raises
    ------
    ValueError
        If ``leverage_scale`` is not a finite number in ``[0, 1]``.
    """

    global_halt: HaltLevel = HaltLevel.NONE
    halted_pairs: frozenset[str] = field(default_factory=frozenset)
    flatten_pairs: frozenset[str] = field(default_factory=frozenset)
    leverage_scale: float = 1.0
    updated_at: float | None = None
    updated_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "global_halt", HaltLevel(self.global_halt))
        object.__setattr__(self, "halted_pairs", frozenset(self.halted_pairs))
        object.__setattr__(self, "flatten_pairs", frozenset(self.flatten_pairs))
        scale = float(self.leverage_scale)
        if not math.isfinite(scale) or not 0.0 <= scale <= 1.0:
            raise ValueError(f"leverage_scale must be in [0, 1], got {self.leverage_scale!r}")
        object.__setattr__(self, "leverage_scale", scale)

    def is_pair_blocked(self, pair_id: str) -> bool:
        """True if no new entry may be opened on ``pair_id`` under these flags."""
        return (
            self.global_halt is not HaltLevel.NONE
            or pair_id in self.halted_pairs
            or pair_id in self.flatten_pairs
        )


def encode_flags(flags: OpsFlags) -> dict[str, str]:
    """Hash fields for ``flags`` (pair sets as sorted JSON lists, scale as ``repr(float)``)."""
    out = {
        "global_halt": flags.global_halt.value,
        "halted_pairs": json.dumps(sorted(flags.halted_pairs)),
        "flatten_pairs": json.dumps(sorted(flags.flatten_pairs)),
        "leverage_scale": repr(flags.leverage_scale),
    }
    if flags.updated_at is not None:
        out["updated_at"] = repr(flags.updated_at)
    if flags.updated_by is not None:
        out["updated_by"] = flags.updated_by
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(raw: str | None, field_name: str) -> frozenset[str]:
    if raw is None or raw == "":
        return frozenset()
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise ValueError(f"{field_name} must be a JSON list of strings, got {raw!r}")
    return frozenset(value)


def decode_flags(raw: Mapping[Any, Any]) -> OpsFlags:
    """Parse the ``core:ops:flags`` hash; missing fields take their defaults.

    An absent hash (empty mapping) means "no flags set": no halt, no pairs, scale 1.0.

    Raises
    ------
    ValueError
        If a field holds an invalid value (unknown halt level, bad JSON, scale out of range).
    """
    fields = {_text(k): _text(v) for k, v in raw.items()}
    try:
        return OpsFlags(
            global_halt=HaltLevel(fields.get("global_halt", HaltLevel.NONE.value)),
            halted_pairs=_pairs(fields.get("halted_pairs"), "halted_pairs"),
            flatten_pairs=_pairs(fields.get("flatten_pairs"), "flatten_pairs"),
            leverage_scale=float(fields.get("leverage_scale", "1.0")),
            updated_at=float(fields["updated_at"]) if "updated_at" in fields else None,
            updated_by=fields.get("updated_by"),
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid ops flags hash: {exc}") from exc


@dataclass(frozen=True)
class FlagsReading:
    """Result of :meth:`SignalBus.read_flags_failsafe`.

    ``status == "unknown"`` means Redis could not be read in time (or held invalid data): the
    caller must then act as under a hard halt (fail safe), never as if trading were allowed.
    """

    status: Literal["ok", "unknown"]
    flags: OpsFlags | None
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class StreamEntry:
    """One signal read back from the stream: its id (``"<ms>-<seq>"``) and payload."""

    id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class SignalMessage:
    """One signal received over pub/sub, with the id of its stream entry."""

    stream_id: str
    payload: dict[str, Any]


class SignalBus:
    """Signals and ops flags over one ``redis.asyncio`` client.

    Parameters
    ----------
    client : redis.asyncio.Redis
        Client created with ``decode_responses=True`` (see :func:`create_redis`).
    namespace : str
        Optional prefix for every key/channel (tests); empty in production.
    stream_maxlen : int
        Approximate cap of the signal stream (``XADD MAXLEN ~``).

    Raises
    ------
    ValueError
        If ``stream_maxlen`` is not positive.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str = "",
        stream_maxlen: int = DEFAULT_STREAM_MAXLEN,
    ) -> None:
        if stream_maxlen <= 0:
            raise ValueError("stream_maxlen must be positive")
        self.client = client
        self.names = BusNames(namespace)
        self.stream_maxlen = stream_maxlen

    # ---------------------------------------------------------------- signals

    async def publish_signal(self, payload: Mapping[str, Any]) -> str:
        """Append ``payload`` to the stream, then publish it on the channel.

        Parameters
        ----------
        payload : mapping
            JSON-serialisable signal (pair_id, ts_utc as RFC 3339 string, action, z, ...).

        Returns
        -------
        str
            The stream entry id.

        Raises
        ------
        TypeError
            If ``payload`` is not JSON-serialisable.
        redis.exceptions.RedisError
            On connection failure or timeout.
        """
        body = json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)
        stream_id = await self.client.xadd(
            self.names.signals_stream,
            {"payload": body},
            maxlen=self.stream_maxlen,
            approximate=True,
        )
        sid = str(stream_id)
        envelope = json.dumps({"stream_id": sid, "payload": dict(payload)}, allow_nan=False)
        await self.client.publish(self.names.signals_channel, envelope)
        return sid

    async def read_signals(
        self, after_id: str = "0-0", *, count: int = 1000, block_ms: int | None = None
    ) -> list[StreamEntry]:
        """Read stream entries with id strictly greater than ``after_id`` (replay).

        Parameters
        ----------
        after_id : str
            Last id already processed (``"0-0"`` = from the beginning; ``"$"`` = only new
            entries, meaningful with ``block_ms``).
        count : int
            Maximum number of entries returned.
        block_ms : int, optional
            Wait up to this many milliseconds for new entries when none are available.

        Returns
        -------
        list of StreamEntry
            In id order; empty when nothing is newer than ``after_id``.
        """
        reply: Any = await self.client.xread(
            {self.names.signals_stream: after_id}, count=count, block=block_ms
        )
        entries: list[StreamEntry] = []
        # RESP2 replies are [[stream, entries]], RESP3 replies are {stream: entries}.
        streams = reply.items() if isinstance(reply, dict) else (reply or [])
        for _stream, items in streams:
            for entry_id, fields in items:
                entries.append(StreamEntry(str(entry_id), json.loads(fields["payload"])))
        return entries

    async def replay_signals(
        self, after_id: str = "0-0", *, batch: int = 1000
    ) -> list[StreamEntry]:
        """Read every entry after ``after_id`` currently in the stream, in batches."""
        out: list[StreamEntry] = []
        cursor = after_id
        while True:
            chunk = await self.read_signals(cursor, count=batch)
            if not chunk:
                return out
            out.extend(chunk)
            cursor = chunk[-1].id

    async def set_pair_metrics(self, pair_id: str, metrics: Mapping[str, Any]) -> None:
        """Store the live risk metrics of ``pair_id`` (JSON-serialisable mapping, replaced whole)."""
        body = json.dumps(dict(metrics), separators=(",", ":"), allow_nan=False)
        await self.client.hset(self.names.pair_metrics, pair_id, body)

    async def get_pair_metrics(self) -> dict[str, dict[str, Any]]:
        """Return ``{pair_id: metrics}`` for every pair with stored live metrics."""
        raw = await self.client.hgetall(self.names.pair_metrics)
        return {str(k): json.loads(v) for k, v in raw.items()}

    async def announce_bars_closed(self, payload: Mapping[str, Any]) -> int:
        """Publish a "new closed bars stored" notice; return the number of receivers.

        Parameters
        ----------
        payload : mapping
            JSON-serialisable, e.g. ``{"timeframe": "1h", "symbols": ["XAUUSD"],
            "last_ts_utc": "2024-06-28T20:00:00+00:00", "ingest_run_id": "..."}``.
        """
        body = json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)
        return int(await self.client.publish(self.names.bars_closed_channel, body))

    @asynccontextmanager
    async def subscribe_bars_closed(self) -> AsyncIterator[Subscription[dict[str, Any]]]:
        """Subscribe to closed-bar notices (async context manager)."""
        async with self._subscribe(self.names.bars_closed_channel, json.loads) as sub:
            yield sub

    @asynccontextmanager
    async def subscribe_signals(self) -> AsyncIterator[Subscription[SignalMessage]]:
        """Subscribe to the live signal channel (async context manager)."""
        async with self._subscribe(self.names.signals_channel, _parse_signal) as sub:
            yield sub

    # ---------------------------------------------------------------- ops flags

    async def get_flags(self) -> OpsFlags:
        """Read ``core:ops:flags``.

        Raises
        ------
        redis.exceptions.RedisError
            If Redis is unreachable or times out.
        ValueError
            If the hash holds invalid values.
        """
        return decode_flags(await self.client.hgetall(self.names.ops_flags))

    async def set_flags(self, flags: OpsFlags, *, updated_by: str | None = None) -> OpsFlags:
        """Replace the whole flags hash atomically and announce the change.

        Returns
        -------
        OpsFlags
            The flags as written (with ``updated_at`` / ``updated_by`` stamped).
        """
        stamped = replace(flags, updated_at=time.time(), updated_by=updated_by or flags.updated_by)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.names.ops_flags)
            mapping: dict[Any, Any] = encode_flags(stamped)
            pipe.hset(self.names.ops_flags, mapping=mapping)
            pipe.publish(self.names.flags_changed_channel, json.dumps(encode_flags(stamped)))
            await pipe.execute()
        return stamped

    async def update_flags(
        self,
        change: Callable[[OpsFlags], OpsFlags],
        *,
        updated_by: str | None = None,
        max_attempts: int = 20,
    ) -> OpsFlags:
        """Read-modify-write the flags under ``WATCH`` (safe against concurrent writers).

        Parameters
        ----------
        change : callable
            Pure function from the current flags to the new flags.
        updated_by : str, optional
            Recorded as ``updated_by``.
        max_attempts : int
            Retries when another writer changed the hash in between.

        Raises
        ------
        RuntimeError
            If the hash kept changing for ``max_attempts`` attempts.
        """
        key = self.names.ops_flags
        for _ in range(max_attempts):
            async with self.client.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    current = decode_flags(await pipe.hgetall(key))
                    new = replace(change(current), updated_at=time.time(), updated_by=updated_by)
                    encoded: dict[Any, Any] = encode_flags(new)
                    pipe.multi()
                    pipe.delete(key)
                    pipe.hset(key, mapping=encoded)
                    pipe.publish(self.names.flags_changed_channel, json.dumps(encoded))
                    await pipe.execute()
                    return new
                except WatchError:
                    continue
        raise RuntimeError(f"could not update {key}: concurrent writers for {max_attempts} tries")

    async def set_global_halt(
        self, level: HaltLevel | str, *, updated_by: str | None = None
    ) -> OpsFlags:
        """Set ``global_halt`` (``none`` resumes), keeping the other flags."""
        lvl = HaltLevel(level)
        return await self.update_flags(lambda f: replace(f, global_halt=lvl), updated_by=updated_by)

    async def set_leverage_scale(self, scale: float, *, updated_by: str | None = None) -> OpsFlags:
        """Set ``leverage_scale`` (fraction in ``[0, 1]``), keeping the other flags."""
        return await self.update_flags(
            lambda f: replace(f, leverage_scale=scale), updated_by=updated_by
        )

    async def set_pairs(
        self,
        *,
        halted: Iterable[str] | None = None,
        flatten: Iterable[str] | None = None,
        add: bool = True,
        updated_by: str | None = None,
    ) -> OpsFlags:
        """Add (``add=True``) or remove pairs from ``halted_pairs`` / ``flatten_pairs``."""
        h = frozenset(halted or ())
        fl = frozenset(flatten or ())

        def change(f: OpsFlags) -> OpsFlags:
            if add:
                return replace(
                    f, halted_pairs=f.halted_pairs | h, flatten_pairs=f.flatten_pairs | fl
                )
            return replace(f, halted_pairs=f.halted_pairs - h, flatten_pairs=f.flatten_pairs - fl)

        return await self.update_flags(change, updated_by=updated_by)

    async def read_flags_failsafe(self, timeout_s: float = 0.5) -> FlagsReading:
        """Read the flags, reporting ``"unknown"`` instead of raising when Redis fails.

        Parameters
        ----------
        timeout_s : float
            Hard deadline in seconds for the whole read (connect included).

        Returns
        -------
        FlagsReading
            ``status="ok"`` with the flags, or ``status="unknown"`` with ``flags=None`` and the
            error text when Redis is unreachable, too slow, or holds invalid flags. Callers
            must treat ``unknown`` as a hard halt.
        """
        start = time.perf_counter()
        try:
            flags = await asyncio.wait_for(self.get_flags(), timeout=timeout_s)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            return FlagsReading(
                "unknown", None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
            )
        return FlagsReading("ok", flags, None, time.perf_counter() - start)

    @asynccontextmanager
    async def subscribe_flags(self) -> AsyncIterator[Subscription[OpsFlags]]:
        """Subscribe to flags-change announcements (async context manager)."""
        async with self._subscribe(self.names.flags_changed_channel, _parse_flags) as sub:
            yield sub

    # ---------------------------------------------------------------- internals

    @asynccontextmanager
    async def _subscribe(
        self, channel: str, parse: Callable[[str], Any]
    ) -> AsyncIterator[Subscription[Any]]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        try:
            yield Subscription(pubsub, parse)
        finally:
            await pubsub.unsubscribe(channel)
            await pubsub.aclose()


def _parse_signal(data: str) -> SignalMessage:
    body = json.loads(data)
    return SignalMessage(stream_id=str(body["stream_id"]), payload=body["payload"])


def _parse_flags(data: str) -> OpsFlags:
    return decode_flags(json.loads(data))


class Subscription(Generic[T]):
    """A live subscription; :meth:`get` waits for the next message."""

    def __init__(self, pubsub: PubSub, parse: Callable[[str], T]) -> None:
        self._pubsub = pubsub
        self._parse = parse

    async def get(self, timeout_s: float = 1.0) -> T | None:
        """Return the next message, or ``None`` if none arrives within ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=remaining)
            if msg is not None and msg.get("type") == "message":
                return self._parse(msg["data"])
