"""The router's side of the shards: replicas, their health, and one way to forward a call.

Each shard is a list of replicas (searchers holding the same part of every collection, tailing the
same store). ``ShardFanOut.call_shard`` is the one place a call reaches a shard:

- replicas are tried live-first (health probes every ``health_interval_s``, and a replica whose
  call failed as unreachable counts as down until a probe says SERVING again), starting one
  further along at each call so the load spreads over the replicas;
- a replica that fails with a code another replica may not share (UNAVAILABLE, RESOURCE_EXHAUSTED,
  CANCELLED: a process killed, stopping, or full) is skipped and the next one asked at once;
  searches are reads, so asking twice is harmless;
- a replica that has not answered after ``hedge_after_ms`` gets company: the request goes to the
  next replica too, the first answer wins and the other call is cancelled (a slow replica costs
  the hedge delay, not the deadline);
- a shard none of whose replicas answered raises ``ShardUnavailable`` naming the shard and every
  replica's reason; any other failure (NOT_FOUND, INVALID_ARGUMENT, DEADLINE_EXCEEDED...) would
  be the same on every replica and ends the call with that code, naming shard and replica.

Every call carries the caller's remaining deadline, its ``x-request-id``, and either the router's
own shard token or, without one, the caller's ``authorization`` header.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from indexer.config import RouterConfig
from indexer.errors import InvalidArgument, ShardUnavailable
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.auth import AUTHORIZATION, channel_credentials
from searcher.endpoint import message_limits
from searcher.telemetry import REQUEST_ID, RouterMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# Codes that say "this replica, now" rather than "this request": another replica may answer.
RETRY_ON_ANOTHER_REPLICA = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)
HEALTH_SERVICE = pb.DESCRIPTOR.services_by_name["Search"].full_name


def parse_shards(raw: str) -> tuple[tuple[str, ...], ...]:
    """``h1:p|h2:p,h3:p|h4:p`` -> replicas per shard, in shard order; each target once."""
    shards = tuple(
        tuple(replica.strip() for replica in part.split("|") if replica.strip())
        for part in raw.split(",")
        if part.strip()
    )
    if not shards:
        raise InvalidArgument("--shards needs at least one host:port", field="shards")
    targets = [target for shard in shards for target in shard]
    for target in targets:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgument(f"shard replica {target!r} is not host:port", field="shards")
    if len(set(targets)) != len(targets):
        raise InvalidArgument("--shards names a replica twice", field="shards")
    return shards


@dataclass(frozen=True)
class CallOptions:
    """What a call to a replica carries: the caller's remaining deadline and headers."""

    timeout: float | None
    metadata: tuple[tuple[str, str], ...]


@dataclass
class Replica:
    target: str
    channel: grpc.aio.Channel
    search: pb_grpc.SearchStub
    collections: pb_grpc.CollectionsStub
    health: health_pb2_grpc.HealthStub
    up: bool = True  # optimistic until the first probe: a router starting beside its shards


@dataclass
class Shard:
    index: int
    replicas: list[Replica]
    turn: int = -1

    @property
    def name(self) -> str:
        return f"shard {self.index} ({'|'.join(r.target for r in self.replicas)})"

    def in_order(self) -> list[Replica]:
        """Live replicas first, each call starting one further along; then the down ones."""
        self.turn = (self.turn + 1) % len(self.replicas)
        rotated = self.replicas[self.turn :] + self.replicas[: self.turn]
        return [r for r in rotated if r.up] + [r for r in rotated if not r.up]


ReplicaCall = Callable[[Replica, CallOptions], Awaitable[T]]


class ShardFailed(Exception):
    """A replica's answer that every replica would give alike: ends the call with its code."""

    def __init__(self, shard: Shard, replica: Replica, error: grpc.aio.AioRpcError) -> None:
        super().__init__(f"shard {shard.index} ({replica.target}): {error.details()}")
        self.code = error.code()


@dataclass(frozen=True)
class Gathered(Generic[T]):
    """Answers of the shards that answered, in shard order (``shards[i]`` gave ``answers[i]``),
    and the names of the others."""

    answers: list[T]
    missing: list[str]
    shards: list[Shard]

    @property
    def partial(self) -> bool:
        return bool(self.missing)


def _channel(target: str, config: RouterConfig, max_message_bytes: int) -> grpc.aio.Channel:
    options = message_limits(max_message_bytes)
    if not config.tls:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = channel_credentials(config.tls_ca, config.tls_cert, config.tls_key, named="shard_")
    return grpc.aio.secure_channel(target, credentials, options=options)


def _replica(target: str, config: RouterConfig, max_message_bytes: int) -> Replica:
    channel = _channel(target, config, max_message_bytes)
    return Replica(
        target,
        channel,
        pb_grpc.SearchStub(channel),
        pb_grpc.CollectionsStub(channel),
        health_pb2_grpc.HealthStub(channel),
    )


class ShardFanOut:
    """Calls to the shards' replicas, health-checked and hedged (see the module docstring)."""

    def __init__(self, config: RouterConfig, max_message_bytes: int, metrics: RouterMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._hedge_s = None if config.hedge_after_ms is None else config.hedge_after_ms / 1000
        self._shards = [
            Shard(i, [_replica(target, config, max_message_bytes) for target in targets])
            for i, targets in enumerate(config.shards)
        ]
        self._turn = -1
        self._probing: asyncio.Task[None] | None = None

    @property
    def shards(self) -> list[Shard]:
        return self._shards

    def start(self) -> None:
        """Start probing every replica's health in the background."""
        self._probing = asyncio.ensure_future(self._probe_forever())

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
        for shard in self._shards:
            for replica in shard.replicas:
                await replica.channel.close()

    # -- health ---------------------------------------------------------------------------------

    async def _probe_forever(self) -> None:
        replicas = [(shard, replica) for shard in self._shards for replica in shard.replicas]
        while True:
            await asyncio.gather(*(self._probe(shard, replica) for shard, replica in replicas))
            await asyncio.sleep(self._config.health_interval_s)

    async def _probe(self, shard: Shard, replica: Replica) -> None:
        request = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
        try:
            answer = await replica.health.Check(request, timeout=self._config.health_interval_s)
            up = answer.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            up = False
        self._mark(shard, replica, up)

    def _mark(self, shard: Shard, replica: Replica, up: bool) -> None:
        if up != replica.up:
            log.warning("%s: replica %s is %s", shard.name, replica.target, "up" if up else "down")
        replica.up = up
        self._metrics.replica_up.labels(str(shard.index), replica.target).set(1 if up else 0)

    # -- one call -------------------------------------------------------------------------------

    def _options(self, context: grpc.aio.ServicerContext) -> CallOptions:
        """The caller's remaining deadline and forwarded headers, for one call to a replica."""
        incoming = {
            item.key: item.value
            for item in (context.invocation_metadata() or ())
            if isinstance(item.value, str)
        }
        metadata = []
        if self._config.token is not None:
            metadata.append((AUTHORIZATION, f"Bearer {self._config.token}"))
        elif AUTHORIZATION in incoming:
            metadata.append((AUTHORIZATION, incoming[AUTHORIZATION]))
        if REQUEST_ID in incoming:
            metadata.append((REQUEST_ID, incoming[REQUEST_ID]))
        return CallOptions(timeout=context.time_remaining(), metadata=tuple(metadata))

    async def _timed(
        self,
        shard: Shard,
        replica: Replica,
        method: str,
        call: ReplicaCall[T],
        context: grpc.aio.ServicerContext,
    ) -> T:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await call(replica, self._options(context))
        except grpc.aio.AioRpcError as error:
            code = error.code()
            self._metrics.shard_errors.labels(str(shard.index), replica.target, code.name).inc()
            raise
        finally:
            self._metrics.shard_latency.labels(str(shard.index), replica.target, method, code.name).observe(
                time.perf_counter() - started
            )

    async def call_shard(
        self,
        shard: Shard,
        context: grpc.aio.ServicerContext,
        method: str,
        call: ReplicaCall[T],
        *,
        hedge: bool = True,
    ) -> T:
        """``call`` on one replica of ``shard``: the next on failure, a second one when slow."""
        queue = shard.in_order()
        running: dict[asyncio.Future[T], Replica] = {}
        reasons: list[str] = []

        def ask_next() -> None:
            replica = queue.pop(0)
            running[asyncio.ensure_future(self._timed(shard, replica, method, call, context))] = replica

        ask_next()
        try:
            while running:
                wait_s = self._hedge_s if hedge and queue else None
                done, _ = await asyncio.wait(running, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    self._metrics.hedges.labels(str(shard.index)).inc()
                    ask_next()
                    continue
                for task in done:
                    replica = running.pop(task)
                    error = task.exception()
                    if error is None:
                        return task.result()
                    if not isinstance(error, grpc.aio.AioRpcError):
                        raise error
                    if error.code() not in RETRY_ON_ANOTHER_REPLICA:
                        raise ShardFailed(shard, replica, error) from error
                    self._mark(shard, replica, False)
                    reasons.append(f"{replica.target}: {error.code().name} {error.details()}")
                if not running and queue:
                    ask_next()
            raise ShardUnavailable(shard.name, "; ".join(reasons))
        finally:
            for task in running:
                task.cancel()

    # -- several shards -------------------------------------------------------------------------

    async def all(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        call: ReplicaCall[T],
        *,
        allow_partial: bool = False,
    ) -> Gathered[T]:
        """``call`` on every shard at once. A shard without a live replica is left out when
        ``allow_partial`` (named in ``missing``), else it fails the call; so does any other failure."""
        started = time.perf_counter()
        tasks = [asyncio.ensure_future(self.call_shard(s, context, method, call)) for s in self._shards]
        try:
            results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        self._metrics.fan_out.labels(method).observe(time.perf_counter() - started)
        answers: list[T] = []
        missing: list[str] = []
        answered: list[Shard] = []
        unavailable: list[ShardUnavailable] = []
        for shard, result in zip(self._shards, results, strict=True):
            if isinstance(result, ShardUnavailable):
                unavailable.append(result)
                missing.append(result.shard)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(result)
                answered.append(shard)
        if unavailable and (not allow_partial or not answers):
            raise unavailable[0]
        if missing:
            self._metrics.partial.labels(method).inc()
        return Gathered(answers, missing, answered)

    async def every_replica(
        self, shard: Shard, context: grpc.aio.ServicerContext, method: str, call: ReplicaCall[T]
    ) -> list[T]:
        """``call`` on each live replica of ``shard`` at once (every replica when none is
        live): the answers of those that answered. For a shard that already answered once, when
        the router needs to know what each of its replicas says now (their indexes can differ
        for a while, each following the store on its own clock)."""
        replicas = [r for r in shard.replicas if r.up] or shard.replicas
        asked = (self._timed(shard, replica, method, call, context) for replica in replicas)
        results = await asyncio.gather(*asked, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, grpc.aio.AioRpcError):
                raise result
        return [result for result in results if not isinstance(result, BaseException)]

    async def any(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        call: ReplicaCall[T],
        *,
        hedge: bool = True,
    ) -> T:
        """``call`` on one replica of any shard, for what every shard answers alike (the shared
        store, embedding a query): the shards take turns, and the next shard stands in for one
        with no live replica."""
        self._turn = (self._turn + 1) % len(self._shards)
        order: Sequence[Shard] = self._shards[self._turn :] + self._shards[: self._turn]
        for shard in order[:-1]:
            try:
                return await self.call_shard(shard, context, method, call, hedge=hedge)
            except ShardUnavailable:
                continue
        return await self.call_shard(order[-1], context, method, call, hedge=hedge)
