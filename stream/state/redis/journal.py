"""How :class:`~intentstream.stream.state.redis.sessions.RedisSessionStore` commits a step
on a Redis Cluster, where one MULTI cannot span a step's keys.

A step writes user states (``P:{u:<user>}:ses``, one slot per user, spread over the
nodes) and partition keys (``P:{p:<n>}:meta``, ``:due``, ``:outbox``, ``:journal``, which
share one slot through their hash tag). What is atomic: one MULTI/EXEC on the partition
slot, and each single-key write. What the exactly-once-in-effect argument of
:mod:`intentstream.stream.engine.partition` needs is that a step is applied entirely or,
seen by the next step, not at all. A write-ahead journal in the partition slot gives
exactly that:

W1. one script on the partition slot (:data:`W1_LUA`, atomic like a MULTI): the step's
    outbox entries, and the journal (a hash: ``m`` the new meta, ``u:<user>`` each new
    user state, ``d:<user>`` each new due time, empty for none). **This is the commit
    point**;
W2. the user states, ``SET ... PX ttl`` (pipelined, per node; each SET atomic);
W3. one MULTI on the partition slot: the due index changes, the meta, ``DEL`` the journal.

With ``[redis] wait_replicas`` = n > 0, W1 and W2 are each followed by ``WAIT n
wait_timeout_ms`` on every node they wrote, in the same pipeline and so on the same
connection (WAIT counts that connection's writes); fewer acknowledgements fail the
step (:class:`~intentstream.stream.state.StoreUnavailable`: retried, the journal makes
that idempotent). Why and when: the README's "Clusters".

A step without user states (only dead letters, or nothing changed) is one MULTI: outbox,
due and meta. Per-slot reads: :meth:`load_partition` reads meta and the journal's meta in
one MULTI on the partition slot and answers the journal's when there is one;
``load_users`` and ``due_users`` lay the journal's users and due times over what W2/W3
may not have written yet. So a reader always sees the last committed step, whole.

kill -9 (or a failed call) between two slot writes:

* before W1 commits: nothing of the step exists; Kafka redelivers its input; the same
  events give the same outputs with the same ids (as on a standalone Redis);
* between W1 and W3 (some user states written, some not): the step is committed: its
  outbox entries are published by the restarted agent's outbox recovery, its meta (from
  the journal) makes the redelivered input count as applied, its users read as the
  journal says. The next commit of the partition first finishes W2 and W3 from the
  journal (roll forward; rewriting a user state already written is idempotent), then
  writes its own. Only the partition's owner commits (Kafka's group assignment), so a
  roll forward never races a newer step;
* after W3: done, as on a standalone Redis.

Ordering across slots relied on: W2 only after W1 has been acknowledged, W3 only after
every W2 write has been acknowledged (the journal is deleted only once every user state
it holds is stored). Across partitions nothing is ordered. The fatigue ledger's scripts
(one user's slot each) run before the commit, as on a standalone Redis: each is atomic and
idempotent by action id, so a step that is redone reads back the verdicts it recorded.

A failover (a primary killed, its replica promoted) may lose the writes the replica had
not received yet (replication is asynchronous). Lost W1 with W2 kept would leave users
ahead of their partition (their events skipped, their outputs never made), lost W2 after
W3 users behind it: ``WAIT`` after W1 and after W2 rules both out; a lost W3 only brings
the journal back (rolled forward again).

Cost: a step with user states writes them twice (journal and keys) in three round trips
instead of one MULTI; the journal lives only until W3.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from intentstream.stream.state.redis import keys
from intentstream.stream.state.sessions import CommitBatch, PartitionMeta

META = b"m"
USER = "u:"
DUE = "d:"


def journal_fields(batch: CommitBatch) -> dict[str, bytes]:
    """The journal hash of a step: its meta, user states and due times (b"": none).

    >>> batch = CommitBatch(PartitionMeta(hi=3), {"alice": b"s"}, {"alice": 7, "bob": None})
    >>> parse_journal({k.encode(): v for k, v in journal_fields(batch).items()}) == batch
    True
    """
    fields = {META.decode(): batch.meta.dump()}
    fields.update((f"{USER}{u}", data) for u, data in batch.users.items())
    fields.update((f"{DUE}{u}", b"" if d is None else str(d).encode()) for u, d in batch.dues.items())
    return fields


def parse_journal(raw: dict[bytes, bytes]) -> CommitBatch | None:
    """The step a journal hash holds (no outbox: W1 wrote it), None for no journal."""
    if META not in raw:
        return None
    batch = CommitBatch(PartitionMeta.load(raw[META]))
    for k, v in raw.items():
        name = k.decode()
        if name.startswith(USER):
            batch.users[name[len(USER) :]] = v
        elif name.startswith(DUE):
            batch.dues[name[len(DUE) :]] = int(v) if v else None
    return batch


def queue_partition_writes(pipe: Any, prefix: str, partition: int, batch: CommitBatch, *, outbox: bool, rest: bool) -> None:
    """Queue on ``pipe`` the writes of ``batch`` to the partition's slot: the outbox
    entries (``outbox``), the due index changes and the meta (``rest``)."""
    if outbox and batch.outbox:
        pipe.hset(keys.partition_outbox(prefix, partition), mapping={e.id: e.dump() for e in batch.outbox})
    if not rest:
        return
    due_key = keys.partition_due(prefix, partition)
    add = {u: d for u, d in batch.dues.items() if d is not None}
    remove = [u for u, d in batch.dues.items() if d is None]
    if add:
        pipe.zadd(due_key, add)
    if remove:
        pipe.zrem(due_key, *remove)
    pipe.set(keys.partition_meta(prefix, partition), batch.meta.dump())


#: W1: KEYS outbox, journal; ARGV n, then n (id, entry) pairs, then the journal's
#: (field, value) pairs.
W1_LUA = """
-- HSET key ARGV[i..j] in chunks: unpack has a limit of a few thousand values
local function hset(key, i, j)
  while i <= j do
    local k = math.min(j, i + 999)
    redis.call('HSET', key, unpack(ARGV, i, k))
    i = k + 1
  end
end
local n = tonumber(ARGV[1])
hset(KEYS[1], 2, 1 + 2 * n)
redis.call('DEL', KEYS[2])
hset(KEYS[2], 2 + 2 * n, #ARGV)
return 1
"""


def queue_user_writes(pipe: Any, prefix: str, batch: CommitBatch, ttl_ms: int) -> None:
    for user, data in batch.users.items():
        pipe.set(keys.user_state(prefix, user), data, px=ttl_ms)


class ClusterCommits:
    """The journal protocol above for one store: which partitions may hold a journal
    (unknown until read; None once this process knows there is none)."""

    def __init__(self, client: Any, prefix: str, user_ttl_ms: int, *, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.client = client
        self.prefix = prefix
        self.user_ttl_ms = user_ttl_ms
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._pending: dict[int, CommitBatch | None] = {}

    def load_meta(self, partition: int) -> PartitionMeta:
        pipe = self.client.pipeline(transaction=True)  # one slot: a consistent pair
        pipe.get(keys.partition_meta(self.prefix, partition))
        pipe.hget(keys.partition_journal(self.prefix, partition), META)
        meta, journal_meta = pipe.execute()
        if journal_meta is None:
            self._pending[partition] = None
            return PartitionMeta.load(meta)
        self._pending.pop(partition, None)  # read it whole when a reader needs it
        return PartitionMeta.load(journal_meta)

    def pending(self, partition: int) -> CommitBatch | None:
        """The committed step W3 has not finished, if any (read once, then remembered)."""
        if partition not in self._pending:
            raw = self.client.hgetall(keys.partition_journal(self.prefix, partition))
            self._pending[partition] = parse_journal(raw)
        return self._pending[partition]

    def commit(self, partition: int, batch: CommitBatch) -> None:
        try:
            prev = self.pending(partition)
            if prev is not None:  # roll the interrupted step forward first
                self._finish(partition, prev)
            if batch.users:
                outbox, journal = keys.partition_outbox(self.prefix, partition), keys.partition_journal(self.prefix, partition)
                args: list[Any] = [len(batch.outbox)]
                for e in batch.outbox:
                    args += [e.id, e.dump()]
                for field, value in journal_fields(batch).items():
                    args += [field, value]
                pipe = self.client.pipeline(transaction=False)
                pipe.execute_command("EVAL", W1_LUA, 2, outbox, journal, *args)
                self._execute_waiting(pipe, [outbox])  # W1: committed
                self._finish(partition, batch)
            else:
                pipe = self.client.pipeline(transaction=True)
                queue_partition_writes(pipe, self.prefix, partition, batch, outbox=True, rest=True)
                pipe.execute()
            self._pending[partition] = None
        except BaseException:
            self._pending.pop(partition, None)  # unknown: read the journal again
            raise

    def _finish(self, partition: int, batch: CommitBatch) -> None:
        """W2 then W3 of a committed step."""
        pipe = self.client.pipeline(transaction=False)
        queue_user_writes(pipe, self.prefix, batch, self.user_ttl_ms)
        self._execute_waiting(pipe, [keys.user_state(self.prefix, u) for u in batch.users])
        pipe = self.client.pipeline(transaction=True)
        queue_partition_writes(pipe, self.prefix, partition, batch, outbox=False, rest=True)
        pipe.delete(keys.partition_journal(self.prefix, partition))
        pipe.execute()

    def _execute_waiting(self, pipe: Any, written: list[str]) -> None:
        """Execute ``pipe``; with ``wait_replicas``, end it with a WAIT on each node that
        holds one of the ``written`` keys (the same connection as its writes)."""
        nodes = {} if not self.wait_replicas else {n.name: n for n in map(self.client.get_node_from_key, written)}
        for node in nodes.values():
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms, target_nodes=node)
        replies = pipe.execute()
        acks = replies[len(replies) - len(nodes) :] if nodes else []
        if any(int(a) < self.wait_replicas for a in acks):
            raise RedisConnectionError(f"WAIT: {min(map(int, acks))} of {self.wait_replicas} replicas acknowledged within {self.wait_timeout_ms} ms")

    def overlay_users(self, partition: int, found: dict[str, bytes], users: list[str]) -> dict[str, bytes]:
        step = self.pending(partition)
        if step is None:
            return found
        return {**found, **{u: step.users[u] for u in users if u in step.users}}

    def overlay_dues(self, partition: int, until_ms: int) -> list[str] | None:
        """``due_users`` with the journal's due times laid over the index; None when
        there is no journal (read the index alone)."""
        step = self.pending(partition)
        if step is None:
            return None
        raw = self.client.zrangebyscore(keys.partition_due(self.prefix, partition), "-inf", until_ms, withscores=True)
        dues = {m.decode(): int(score) for m, score in raw}
        for u, d in step.dues.items():
            if d is None or d > until_ms:
                dues.pop(u, None)
            else:
                dues[u] = d
        return sorted(dues, key=lambda u: (dues[u], u))
