"""Redis :class:`~intentstream.stream.state.fatigue.LedgerStore`: one Lua script per decision, atomic per user.

Key layout (``stream/state/redis/keys.py``; ``P`` = ``[redis] key_prefix``, every key of a
user hash-tagged ``{u:<user_id>}`` so one script may touch them on Redis Cluster):

``P:{u:<user>}:fat:ch:<channel>``   sorted set, member = action_id, score = send time (ms);
                                    ``coupon`` is one more such channel
``P:{u:<user>}:fat:cd:<trigger>``   string, event time (ms) that started the cooldown
``P:{u:<user>}:fat:act:<action_id>`` hash ``st rs ch sa fb cp pl``: the recorded verdict

Every write sets a TTL (``PEXPIRE``): ``limits.ttl_ms`` (window or cooldown, whichever is
longer, + retention slack) for delivery sets and records, cooldown + slack for cooldowns.
TTLs run on the Redis server's clock and only collect garbage; decisions use the scores
and the event times passed in. Sorted sets are also pruned by event time (scores older
than window + slack before the decision).

The script (:data:`LEDGER_LUA`) takes the candidate channels in preference order with
their send times already computed in Python (quiet hours need time-zone data, which Lua
does not have) and applies rules 1, 2, 4, 5 and 6 of :mod:`intentstream.stream.decisions.fatigue` in one atomic
step. It is called with EVALSHA; on NOSCRIPT (a restarted or flushed server) it is loaded
again with SCRIPT LOAD and the call retried.

>>> LEDGER_SHA == hashlib.sha1(LEDGER_LUA.encode()).hexdigest()
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from redis.exceptions import NoScriptError

from intentstream.stream.state.fatigue import COUPON_CHANNEL, LedgerRequest, Limits, Verdict
from intentstream.stream.state.redis.client import make_client
from intentstream.stream.state.redis.keys import channel_key, cooldown_key, record_key

#: The ledger script. Contract:
#:   KEYS[1] record hash of the action, KEYS[2] cooldown of the trigger,
#:   KEYS[3 .. 2+n] delivery sets of the n candidate channels (preference order),
#:   KEYS[3+n] the coupon set.
#:   ARGV[1] now (ms)  [2] window_ms  [3] channel_cap  [4] coupon_cap  [5] cooldown_ms
#:   [6] retention_ms  [7] ttl_ms  [8] holdout "1"/"0"  [9] coupon "1"/"0"
#:   [10] first-choice channel ("" for none)  [11] action_id  [12] payload
#:   [13 .. 12+n] send times (ms), [13+n .. 12+2n] channel names, same order as KEYS.
#:   Returns {duplicate 0/1, status, reason, channel, send_at, fallback_from, coupon,
#:   payload}, "" standing for null; the payload only for a duplicate (the caller has its
#:   own otherwise).
LEDGER_LUA: Final = r"""
local rec = redis.call('HMGET', KEYS[1], 'st', 'rs', 'ch', 'sa', 'fb', 'cp', 'pl')
if rec[1] then
  return {1, rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7]}
end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local coupon_cap = tonumber(ARGV[4])
local cooldown = tonumber(ARGV[5])
local retention = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
local holdout = ARGV[8] == '1'
local want_coupon = ARGV[9] == '1'
local first = ARGV[10]
local aid = ARGV[11]
local payload = ARGV[12]
local n = (#ARGV - 12) / 2
local not_sent = ''
if want_coupon then not_sent = 'not_sent' end

local function ms(x) return string.format('%.0f', x) end

local function record(st, rs, ch, sa, fb, cp)
  redis.call('HSET', KEYS[1], 'st', st, 'rs', rs, 'ch', ch, 'sa', sa, 'fb', fb, 'cp', cp, 'pl', payload)
  redis.call('PEXPIRE', KEYS[1], ms(ttl))
  return {0, st, rs, ch, sa, fb, cp, ''}
end

-- one more delivery at t keeps every window (e - window, e] containing t within limit
local function fits(key, t, limit)
  if limit <= 0 then return false end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(now - window - retention))
  local raw = redis.call('ZRANGEBYSCORE', key, '(' .. ms(t - window), '(' .. ms(t + window), 'WITHSCORES')
  local xs = {}
  for i = 2, #raw, 2 do xs[#xs + 1] = tonumber(raw[i]) end
  local ends = {t}
  for _, x in ipairs(xs) do if x > t then ends[#ends + 1] = x end end
  for _, e in ipairs(ends) do
    local c = 1
    for _, x in ipairs(xs) do
      if x > e - window and x <= e then c = c + 1 end
    end
    if c > limit then return false end
  end
  return true
end

local last = redis.call('GET', KEYS[2])
if last and now < tonumber(last) + cooldown then
  return record('suppressed', 'cooldown', '', '', '', not_sent)
end
if n == 0 then
  return record('suppressed', 'opt_out', '', '', '', not_sent)
end
local idx = nil
for i = 1, n do
  if fits(KEYS[2 + i], tonumber(ARGV[12 + i]), cap) then idx = i; break end
end
if not idx then
  return record('suppressed', 'fatigue_cap', '', '', '', not_sent)
end
local key = KEYS[2 + idx]
local t = tonumber(ARGV[12 + idx])
local ch = ARGV[12 + n + idx]
local sa = ''
if t > now then sa = ms(t) end
local fb = ''
if ch ~= first then fb = first end
redis.call('SET', KEYS[2], ms(now), 'PX', ms(cooldown + retention))
if holdout then
  return record('holdout', 'holdout', ch, sa, fb, not_sent)
end
redis.call('ZADD', key, ms(t), aid)
redis.call('PEXPIRE', key, ms(ttl))
local cp = ''
if want_coupon then
  local ckey = KEYS[3 + n]
  if fits(ckey, t, coupon_cap) then
    redis.call('ZADD', ckey, ms(t), aid)
    redis.call('PEXPIRE', ckey, ms(ttl))
    cp = 'granted'
  else
    cp = 'fatigue_cap'
  end
end
if sa == '' then
  return record('sent', '', ch, sa, fb, cp)
end
return record('deferred', 'quiet_hours', ch, sa, fb, cp)
"""

LEDGER_SHA: Final = hashlib.sha1(LEDGER_LUA.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: Any) -> str | None:
    text = _text(value)
    return text or None


class RedisLedgerStore:
    """:class:`~intentstream.stream.state.fatigue.LedgerStore` on Redis (``redis.Redis`` client, bytes or
    decoded responses). ``pipeline_size`` bounds one round trip of :meth:`apply_many`."""

    def __init__(self, client: Any, key_prefix: str, *, pipeline_size: int = 256) -> None:
        self.client = client
        self.prefix = key_prefix
        self.pipeline_size = pipeline_size
        self._loaded = False

    @classmethod
    def from_settings(cls, settings) -> RedisLedgerStore:  # settings: intentstream.stream.settings.Settings
        rs = settings.redis
        return cls(make_client(rs), rs.key_prefix)

    def keys_and_args(self, req: LedgerRequest, limits: Limits) -> tuple[list[str], list[str | int]]:
        """The script's KEYS and ARGV for one request (see :data:`LEDGER_LUA`)."""
        p, u = self.prefix, req.user_id
        keys = [record_key(p, u, req.action_id), cooldown_key(p, u, req.trigger)]
        keys += [channel_key(p, u, ch) for ch, _ in req.options]
        keys.append(channel_key(p, u, COUPON_CHANNEL))
        args: list[str | int] = [
            req.now,
            limits.window_ms,
            limits.channel_cap,
            limits.coupon_cap,
            limits.cooldown_ms,
            limits.retention_ms,
            limits.ttl_ms,
            "1" if req.holdout else "0",
            "1" if req.coupon else "0",
            req.first_choice or "",
            req.action_id,
            req.payload,
        ]
        args += [t for _, t in req.options]
        args += [ch for ch, _ in req.options]
        return keys, args

    def load_script(self) -> str:
        """SCRIPT LOAD the ledger script (done lazily on NOSCRIPT as well)."""
        sha = _text(self.client.script_load(LEDGER_LUA))
        if sha != LEDGER_SHA:
            raise RuntimeError(f"Redis returned SHA {sha} for the ledger script, expected {LEDGER_SHA}")
        self._loaded = True
        return sha

    def apply(self, req: LedgerRequest, limits: Limits) -> Verdict:
        keys, args = self.keys_and_args(req, limits)
        try:
            reply = self.client.evalsha(LEDGER_SHA, len(keys), *keys, *args)
        except NoScriptError:
            self.load_script()
            reply = self.client.evalsha(LEDGER_SHA, len(keys), *keys, *args)
        return self.parse_reply(reply, req)

    def apply_many(self, reqs: Sequence[LedgerRequest], limits: Limits) -> list[Verdict]:
        """Pipelined (not MULTI): each script is still atomic, and they run in order.

        The script is loaded before the first pipeline. A call refused with NOSCRIPT (the
        server lost its script cache) did not run; such calls are retried one by one, in
        order, after their pipeline. Only a cache lost *during* a pipeline and reloaded by
        another client at once could reorder two calls of one batch; each stays atomic."""
        if not self._loaded:
            self.load_script()
        out: list[Verdict] = []
        for start in range(0, len(reqs), self.pipeline_size):
            chunk = reqs[start : start + self.pipeline_size]
            pipe = self.client.pipeline(transaction=False)
            for req in chunk:
                keys, args = self.keys_and_args(req, limits)
                pipe.evalsha(LEDGER_SHA, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            for req, reply in zip(chunk, replies):
                if isinstance(reply, NoScriptError):
                    out.append(self.apply(req, limits))
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    out.append(self.parse_reply(reply, req))
        return out

    @staticmethod
    def parse_reply(reply: Sequence[Any], req: LedgerRequest) -> Verdict:
        dup, status, reason, channel, send_at, fallback, coupon, payload = reply
        duplicate = int(dup) == 1
        if not duplicate:
            payload = req.payload
        sa = _text(send_at)
        return Verdict(
            status=_text(status),
            reason=_opt(reason),
            channel=_opt(channel),
            send_at=int(sa) if sa else None,
            fallback_from=_opt(fallback),
            coupon=_opt(coupon),
            payload=payload if isinstance(payload, bytes) else str(payload).encode(),
            duplicate=duplicate,
        )
