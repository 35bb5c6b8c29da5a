"""One whitening map per merge: the router's check on the versions its shards answered in.

A whitening collection's index answers in the version of the map it holds (``SearchResponse.
whitening_version``). While a refit rolls out, shards (and replicas of one shard) switch maps each
on its own clock, and cosines of two maps are not comparable: a merge of both would place
documents by scores neither map gives them. So before a dense answer is merged, the shards whose
answer is older than the newest seen are asked again, on every one of their replicas at once (one
may have switched already), and once more after a short wait; a shard still behind then fails the
call with ``MixedWhiteningVersions`` (UNAVAILABLE: the window closes on its own), or, when the
request allows partial answers, is left out of the merge and named among its missing shards, as a
shard with no live replica is: a front-end keeps answering through a refit, from the shards
already on the new map. The newest version
is the one to wait for, as versions only rise and every shard gets there.

Lexical answers are never checked: no map touches BM25. A shard that predates the field says
nothing and is not checked either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

import grpc

from indexer.errors import MixedWhiteningVersions
from protos.albatross.v1 import albatross_pb2 as pb
from searcher.shards import Gathered, ReplicaCall, ShardFanOut
from searcher.telemetry import RouterMetrics

# How long to wait before asking a lagging shard the last time, at most half of what is left of
# the caller's deadline: about one poll interval (the default 0.5 s), in which a shard that had
# seen the new version and was swapping its index in has usually finished on a small shard. A
# shard still rebuilding a large part takes longer, and the call fails rather than waiting for it.
LAST_ASK_AFTER_S = 0.5

Answer = TypeVar("Answer", pb.SearchResponse, pb.SearchBatchResponse)


def answered_in(answer: pb.SearchResponse | pb.SearchBatchResponse) -> frozenset[int]:
    """The whitening versions one shard's answer was ranked in (one, unless the shard itself
    switched within a batch; none from a shard that predates the field)."""
    results = answer.results if isinstance(answer, pb.SearchBatchResponse) else (answer,)
    return frozenset(result.whitening_version for result in results if result.HasField("whitening_version"))


def newest(versions: Sequence[frozenset[int]]) -> int | None:
    """The newest version any answer was ranked in; None when no answer says."""
    return max((version for said in versions for version in said), default=None)


def lagging(versions: Sequence[frozenset[int]]) -> list[int]:
    """Positions of the answers not wholly in the newest version (none when they all agree)."""
    target = newest(versions)
    return [i for i, said in enumerate(versions) if said and said != {target}]


def _last_ask_after(context: grpc.aio.ServicerContext) -> float:
    remaining = context.time_remaining()
    return LAST_ASK_AFTER_S if remaining is None else max(0.0, min(LAST_ASK_AFTER_S, remaining / 2))


async def in_one_version(
    fan_out: ShardFanOut,
    metrics: RouterMetrics,
    context: grpc.aio.ServicerContext,
    collection: str,
    method: str,
    call: ReplicaCall[Answer],
    *,
    allow_partial: bool = False,
) -> Gathered[Answer]:
    """``call`` on every shard (``ShardFanOut.all``), its answers all in one whitening version;
    else, with ``allow_partial``, without the shards still behind, or ``MixedWhiteningVersions``
    naming ``collection`` and what each shard answered in."""
    gathered = await fan_out.all(context, method, call, allow_partial=allow_partial)
    answers = list(gathered.answers)
    behind = lagging([answered_in(answer) for answer in answers])
    if not behind:
        return gathered
    target = newest([answered_in(answer) for answer in answers])
    for wait_s in (0.0, _last_ask_after(context)):
        await asyncio.sleep(wait_s)
        asked = await asyncio.gather(
            *(fan_out.every_replica(gathered.shards[i], context, method, call) for i in behind)
        )
        for i, said in zip(behind, asked, strict=True):
            answers[i] = next((answer for answer in said if answered_in(answer) == {target}), answers[i])
        behind = [i for i in behind if answered_in(answers[i]) != {target}]
        if not behind:
            metrics.mixed_versions.labels(method, "retried").inc()
            return Gathered(answers, gathered.missing, gathered.shards)
    if allow_partial:
        metrics.mixed_versions.labels(method, "partial").inc()
        return _without(gathered, answers, set(behind))
    metrics.mixed_versions.labels(method, "refused").inc()
    seen = {
        shard.name: tuple(sorted(answered_in(answer)))
        for shard, answer in zip(gathered.shards, answers, strict=True)
    }
    raise MixedWhiteningVersions(collection, seen)


def _without(gathered: Gathered[Answer], answers: list[Answer], behind: set[int]) -> Gathered[Answer]:
    """``answers`` of ``gathered``'s shards but those at ``behind``, which join the missing."""
    kept = [i for i in range(len(answers)) if i not in behind]
    return Gathered(
        [answers[i] for i in kept],
        [*gathered.missing, *(gathered.shards[i].name for i in sorted(behind))],
        [gathered.shards[i] for i in kept],
    )


def merged_version(answers: Sequence[pb.SearchResponse | pb.SearchBatchResponse]) -> int | None:
    """The one version a checked merge was ranked in, to pass on; None when no shard said."""
    return newest([answered_in(answer) for answer in answers])
