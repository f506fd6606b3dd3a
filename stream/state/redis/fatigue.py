"""Redis :class:`~intentstream.stream.state.fatigue.LedgerStore`: one Lua script per decision, atomic per user.

Key layout (``stream/state/redis/keys.py``; ``P`` = ``[redis] key_prefix``, every key of a
user hash-tagged ``{u:<user_id>}`` so one script may touch them on Redis Cluster):

``P:{u:<user>}:fat:ch:<channel>``   sorted set, member = action_id, score = send time (ms);
                                    ``coupon`` is one more such channel
``P:{u:<user>}:fat:msg``            the same, for every message channel together (global
                                    caps; only written while ``global_caps`` are set)
``P:{u:<user>}:fat:cd:<trigger>``   string, event time (ms) that started the cooldown
``P:{u:<user>}:fat:act:<action_id>`` hash ``st rs ch sa fb cp pl``: the recorded verdict

Every write sets a TTL (``PEXPIRE``): ``limits.ttl_ms`` (window or cooldown, whichever is
longer, or the longest global window, + retention slack) for delivery sets and records,
cooldown + slack for cooldowns. TTLs run on the Redis server's clock and only collect
garbage; decisions use the scores and the event times passed in. Sorted sets are also
pruned by event time (scores older than their window + slack before the decision; the
global set by the longest global window), so one user's ledger stays bounded.

The script (:data:`LEDGER_LUA`) takes the candidate channels in preference order with
their send times already computed in Python (quiet hours need time-zone data, which Lua
does not have) and applies rules 1, 2 and 4–7 of :mod:`intentstream.stream.decisions.fatigue` in one atomic
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
from intentstream.stream.state.redis.keys import channel_key, cooldown_key, messages_key, record_key

#: The ledger script. Contract:
#:   KEYS[1] record hash of the action, KEYS[2] cooldown of the trigger,
#:   KEYS[3 .. 2+n] delivery sets of the n candidate channels (preference order),
#:   KEYS[3+n] the coupon set, KEYS[4+n] the set of all messages (global caps).
#:   ARGV[1] now (ms)  [2] window_ms  [3] channel_cap  [4] coupon_cap  [5] cooldown_ms
#:   [6] retention_ms  [7] ttl_ms  [8] holdout "1"/"0"  [9] coupon "1"/"0"
#:   [10] first-choice channel ("" for none)  [11] action_id  [12] payload
#:   [13] reserve_due (ms, "" for none)  [14] the channels send-time optimisation
#:   moved, as ",a,b," (their deferrals say send_time, others quiet_hours)
#:   [15] g, the number of global caps  [16 .. 15+2g] global caps as window_ms, max pairs
#:   [16+2g .. 15+2g+n] send times (ms), [16+2g+n .. 15+2g+2n] channel names, same order
#:   as KEYS.
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
local reserve_due = tonumber(ARGV[13])  -- nil for ""
local scheduled = ARGV[14]
local g = tonumber(ARGV[15])
local gw, gc, gmax = {}, {}, 0
for j = 1, g do
  gw[j] = tonumber(ARGV[14 + 2 * j])
  gc[j] = tonumber(ARGV[15 + 2 * j])
  if gw[j] > gmax then gmax = gw[j] end
end
local base = 15 + 2 * g
local n = (#ARGV - base) / 2
local not_sent = ''
if want_coupon then not_sent = 'not_sent' end

local function ms(x) return string.format('%.0f', x) end

local function record(st, rs, ch, sa, fb, cp)
  redis.call('HSET', KEYS[1], 'st', st, 'rs', rs, 'ch', ch, 'sa', sa, 'fb', fb, 'cp', cp, 'pl', payload)
  redis.call('PEXPIRE', KEYS[1], ms(ttl))
  return {0, st, rs, ch, sa, fb, cp, ''}
end

-- the scores of key within (t - win, t + win), after pruning those older than keep
local function near(key, t, win, keep)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ms(now - keep))
  local raw = redis.call('ZRANGEBYSCORE', key, '(' .. ms(t - win), '(' .. ms(t + win), 'WITHSCORES')
  local xs = {}
  for i = 2, #raw, 2 do xs[#xs + 1] = tonumber(raw[i]) end
  return xs
end

-- window_fits: one more delivery at t keeps every window (e - win, e] containing t
-- within limit; xs may hold scores beyond (t - win, t + win), which are ignored
local function fits_in(xs, t, win, limit)
  if limit <= 0 then return false end
  local ys = {}
  for _, x in ipairs(xs) do if x > t - win and x < t + win then ys[#ys + 1] = x end end
  local ends = {t}
  for _, x in ipairs(ys) do if x > t then ends[#ends + 1] = x end end
  for _, e in ipairs(ends) do
    local c = 1
    for _, x in ipairs(ys) do
      if x > e - win and x <= e then c = c + 1 end
    end
    if c > limit then return false end
  end
  return true
end

local function fits(key, t, limit)
  if limit <= 0 then return false end
  return fits_in(near(key, t, window, window + retention), t, window, limit)
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
  if fits(KEYS[2 + i], tonumber(ARGV[base + i]), cap) then idx = i; break end
end
if not idx then
  return record('suppressed', 'fatigue_cap', '', '', '', not_sent)
end
local key = KEYS[2 + idx]
local t = tonumber(ARGV[base + idx])
local ch = ARGV[base + n + idx]
local mkey = KEYS[4 + n]
if g > 0 then  -- global_block
  local xs = near(mkey, t, gmax, gmax + retention)
  for j = 1, g do
    if not fits_in(xs, t, gw[j], gc[j]) then
      return record('suppressed', 'global_cap', '', '', '', not_sent)
    end
  end
  if reserve_due then
    for j = 1, g do
      if reserve_due < t + gw[j] and not fits_in(xs, t, gw[j], gc[j] - 1) then
        return record('suppressed', 'priority', '', '', '', not_sent)
      end
    end
  end
end
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
if g > 0 then
  redis.call('ZADD', mkey, ms(t), aid)
  redis.call('PEXPIRE', mkey, ms(ttl))
end
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
local why = 'quiet_hours'
if string.find(scheduled, ',' .. ch .. ',', 1, true) then why = 'send_time' end
return record('deferred', why, ch, sa, fb, cp)
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

    def keys_and_args(self, req: LedgerRequest, limits: Limits) -> tuple[list[str], list[str | int | bytes]]:
        """The script's KEYS and ARGV for one request (see :data:`LEDGER_LUA`)."""
        p, u = self.prefix, req.user_id
        keys = [record_key(p, u, req.action_id), cooldown_key(p, u, req.trigger)]
        keys += [channel_key(p, u, ch) for ch, _ in req.options]
        keys.append(channel_key(p, u, COUPON_CHANNEL))
        keys.append(messages_key(p, u))
        args: list[str | int | bytes] = [
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
            "" if req.reserve_due is None else req.reserve_due,
            "," + ",".join(req.scheduled) + ",",
            len(limits.global_caps),
        ]
        for window_ms, cap in limits.global_caps:
            args += [window_ms, cap]
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
        """Pipelined (not MULTI): each script is still atomic, and they run in order
        (on a Redis Cluster, in order per node, so per user: each script touches one user).

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
                # not pipe.evalsha: redis-py blocks that name in a cluster pipeline, yet
                # routes EVALSHA by its keys (one user's slot) when sent like this
                pipe.execute_command("EVALSHA", LEDGER_SHA, len(keys), *keys, *args)
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
