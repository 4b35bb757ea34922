"""The Lua script that does every state change of a :class:`~pyarallel_redis.RedisLimiter`
on the Redis server, atomically, on the server's clock.

One script serves every operation (one SHA to load, one ``NOSCRIPT`` fallback): its first
argument names it. Every call reads the server's ``TIME``, never a client's, so the clocks
of the hosts sharing a budget need not agree.

``KEYS[1]`` is the limiter's pause key (``{pyarallel:<name>}:pause``, the deadline of a
limiter-wide pause); then, for each bucket the operation touches (one per limit of the
call), its hash (``{pyarallel:<name>}:<limit>`` or ``{pyarallel:<name>}:<limit>:<key>``)
and its queue (the same with ``:q``). ``ARGV`` is ``op, waiter, seconds, refill`` then
``rate, burst, amount, shared`` for each bucket (``shared``: ``1`` for the bucket of a
limit without keys, which always exists):

- ``acquire``: check every bucket, then debit every one (``amount``: the call's cost in
  that limit) or none. Answers ``{1, "0", now}`` (granted) or ``{0, wait, now}``.
- ``adjust``: charge ``amount`` more units (negative: refund them) to each bucket, for a
  call already granted (``settle=``).
- ``pause``: grant nothing from these buckets for ``seconds``; restart without a burst.
- ``pause_all``: the same for every bucket of the limiter (lazily: see below); ``refill``
  is the longest time any of its limits takes to refill its burst.
- ``release``: ``waiter`` gave up: it leaves the queues of these buckets.

A bucket is a hash, with the same state as the local limiter's ``Bucket``, times in
seconds since ``BASE`` on the server's clock:

- ``t``: the moment the bucket is full again (GCRA's theoretical arrival time). A call of
  ``cost`` units is allowed at ``now`` iff ``max(t, now) + (cost - burst) / rate <= now``;
  taking it sets ``t = max(t, now) + cost / rate``;
- ``p``: nothing is granted before this moment (a pause);
- a queue of waiters: those the bucket refused, when the bucket (or the waiters ahead of
  them) is what they wait for, served in the order they were first refused; each keeps
  its place until it is granted, cancels, or misses its turn by ``HOLD_GRACE`` seconds.
  The order is a sorted set beside the hash (``<bucket>:q``, scored by arrival), each
  waiter's lapse a field ``w:<waiter>`` of the hash, with ``qn`` (how many), ``qseq``
  (the last arrival number) and ``qmax`` (the furthest lapse, for the TTL). A waiter
  behind others is told to come back near its turn: the head's due time plus, for each
  waiter ahead of it, its own cost's worth of time (the local limiter says the head's
  due time: harmless in one process, but here every early question is a round trip, and
  N waiting keys would cost N per grant);
- ``g``: the limiter-wide pause this bucket has already applied. A limiter-wide pause is
  one write (the pause key); each bucket applies it the next time the script touches it,
  exactly as if it had been paused then: ``p = max(p, until)``, ``t = max(t, until +
  (burst - 1) / rate)``, so calls resume at the steady rate, with no burst.

Every bucket written gets a TTL (``PEXPIRE``): the time until it is at rest again (full,
not paused, nobody queued) plus ``KEEP`` seconds, so idle keys are forgotten, which
changes nothing. The pause key lives until the pause is over plus ``refill`` (after that,
the pause no longer makes any bucket differ from a full one).
"""

from __future__ import annotations

__all__ = [
    "BASE",
    "BINDING_SLACK",
    "EPSILON",
    "HOLD_GRACE",
    "KEEP_SECONDS",
    "LATE_HOLDER_POLL",
    "SCRIPT",
]

# Server times are kept as seconds since this moment (2023-11-14), so a double holds them
# to ~10 ns rather than the ~0.2 µs of seconds since 1970.
BASE = 1_700_000_000
# How long a hold outlives the moment its waiter was told to come back (as the local
# limiter's ``HOLD_GRACE``): its driver may wake late, or its process may have died.
HOLD_GRACE = 0.1
# How often the others ask while the waiter served first is late for its turn.
LATE_HOLDER_POLL = 0.001
# Slack when comparing moments. The server's clock counts microseconds, so nothing finer
# can be told apart: a waiter told to wait w seconds and asking exactly w later is granted.
EPSILON = 1e-6
# Budgets whose wait is within this of the longest are what a refused call waits for.
BINDING_SLACK = 0.001
# How long a bucket at rest (or a pause that no longer matters) is kept before it expires.
KEEP_SECONDS = 1.0

SCRIPT = f"""
-- pyarallel-redis: one atomic step of a limiter (see pyarallel_redis/_script.py).
if redis.replicate_commands then pcall(redis.replicate_commands) end -- Redis < 5: TIME, then writes

local BASE = {BASE}
local HOLD_GRACE = {HOLD_GRACE!r}
local LATE_HOLDER_POLL = {LATE_HOLDER_POLL!r}
local EPSILON = {EPSILON!r}
local BINDING_SLACK = {BINDING_SLACK!r}
local KEEP = {KEEP_SECONDS!r}
local NEVER = -1e300
local MAX_TTL_MS = 1e15

local function fmt(x)
  return string.format('%.17g', x)
end

local clock = redis.call('TIME')
local now = (tonumber(clock[1]) - BASE) + tonumber(clock[2]) / 1000000
local op, waiter = ARGV[1], ARGV[2]
local stamp = fmt(now + BASE)

local raw = redis.call('GET', KEYS[1])
local paused = NEVER
if raw then
  paused = tonumber(raw) or NEVER
end

local function ttl_ms(seconds)
  local ms = math.ceil(seconds * 1000)
  if ms < 1 then ms = 1 end
  if ms > MAX_TTL_MS then ms = MAX_TTL_MS end
  return string.format('%d', ms)
end

if op == 'pause_all' then
  local untilv = math.max(paused, now + tonumber(ARGV[3]))
  redis.call('SET', KEYS[1], fmt(untilv), 'PX', ttl_ms(untilv - now + tonumber(ARGV[4]) + KEEP))
  return {{1, '0', stamp}}
end
if op == 'acquire' and paused > now then
  return {{0, fmt(paused - now), stamp}}
end

local function pause_bucket(b, untilv)
  if untilv > b.p then
    b.p = untilv
    b.t = math.max(b.t, untilv + (b.burst - 1) / b.rate)
    b.dirty = true
  end
end

local buckets = {{}}
for i = 1, (#KEYS - 1) / 2 do
  local a = 5 + (i - 1) * 4
  local key = KEYS[2 * i]
  local f = redis.call('HMGET', key, 't', 'p', 'g', 'qn', 'qseq', 'qmax')
  local b = {{
    key = key,
    qkey = KEYS[2 * i + 1],
    rate = tonumber(ARGV[a]),
    burst = tonumber(ARGV[a + 1]),
    amount = tonumber(ARGV[a + 2]),
    t = tonumber(f[1]) or NEVER,
    p = tonumber(f[2]) or NEVER,
    g = tonumber(f[3]) or NEVER,
    qn = tonumber(f[4]) or 0,
    qseq = tonumber(f[5]) or 0,
    qmax = tonumber(f[6]) or NEVER,
    queued = f[4] ~= false, -- it had a queue when loaded
    dirty = false,
  }}
  if paused > b.g then -- a limiter-wide pause this bucket has not applied yet (a key's
    -- bucket made after the pause ended, or forgotten at rest, starts full, as a local one)
    local exists = ARGV[a + 3] == '1' or f[1] or f[2] or f[3]
    if exists or paused > now then
      pause_bucket(b, paused)
    end
    b.g = paused
  end
  buckets[#buckets + 1] = b
end

-- The queue of waiters of a bucket: a sorted set (by the order they were first refused)
-- beside the bucket, and each waiter's lapse in the bucket's hash, field 'w:<waiter>'.
local function head(b)
  while b.qn > 0 do
    local first = redis.call('ZRANGE', b.qkey, 0, 0)[1]
    if not first then
      b.qn = 0
      b.dirty = true
      return nil
    end
    local lapse = tonumber(redis.call('HGET', b.key, 'w:' .. first))
    if lapse and lapse > now then
      return first, lapse
    end
    redis.call('ZREM', b.qkey, first) -- its place lapsed: it missed its turn, or vanished
    redis.call('HDEL', b.key, 'w:' .. first)
    b.qn = b.qn - 1
    b.dirty = true
  end
  return nil
end

local function hold(b, untilv)
  local lapse = untilv + HOLD_GRACE
  if redis.call('ZADD', b.qkey, 'NX', b.qseq + 1, waiter) == 1 then
    b.qn = b.qn + 1
    b.qseq = b.qseq + 1
  end
  redis.call('HSET', b.key, 'w:' .. waiter, fmt(lapse))
  b.qmax = math.max(b.qmax, lapse)
  b.dirty = true
end

local function release(b)
  if b.qn > 0 and redis.call('ZREM', b.qkey, waiter) == 1 then
    redis.call('HDEL', b.key, 'w:' .. waiter)
    b.qn = b.qn - 1
    b.dirty = true
  end
end

local function save(b)
  if not b.dirty then
    return
  end
  local fields = {{}}
  local function put(name, value)
    fields[#fields + 1] = name
    fields[#fields + 1] = value
  end
  local rest = math.max(b.t, b.p)
  if b.t > NEVER then put('t', fmt(b.t)) end
  if b.p > NEVER then put('p', fmt(b.p)) end
  if b.g > NEVER then put('g', fmt(b.g)) end
  if b.qn > 0 then
    put('qn', string.format('%d', b.qn))
    put('qseq', string.format('%d', b.qseq))
    put('qmax', fmt(b.qmax))
    rest = math.max(rest, b.qmax)
  elseif b.queued then -- the queue emptied: forget it
    redis.call('DEL', b.qkey)
    redis.call('HDEL', b.key, 'qn', 'qseq', 'qmax')
  end
  if #fields > 0 then
    redis.call('HSET', b.key, unpack(fields))
  end
  local ttl = ttl_ms(rest - now + KEEP)
  redis.call('PEXPIRE', b.key, ttl)
  if b.qn > 0 then
    redis.call('PEXPIRE', b.qkey, ttl)
  end
end

local function save_all()
  for _, b in ipairs(buckets) do
    save(b)
  end
end

if op == 'acquire' then
  local longest, waits, owns = 0, {{}}, {{}}
  for i, b in ipairs(buckets) do
    local wait, own
    if b.p > now then
      wait, own = b.p - now, false
    else
      local first, lapse = head(b)
      if first and first ~= waiter then
        -- others are ahead: come back near this waiter's turn, its cost's worth of time
        -- after the head's for each waiter ahead of it (a local limiter says the head's)
        local rank = redis.call('ZRANK', b.qkey, waiter) or b.qn
        wait = math.max(lapse - HOLD_GRACE - now, LATE_HOLDER_POLL) + rank * b.amount / b.rate
      else
        wait = math.max(b.t, now) + (b.amount - b.burst) / b.rate - now
        if wait <= EPSILON then wait = 0 end
      end
      own = true
    end
    waits[i], owns[i] = wait, own
    if wait > longest then longest = wait end
  end
  if longest > 0 then -- debit nothing; queue for the budgets it waits for
    for i, b in ipairs(buckets) do
      if owns[i] and waits[i] >= longest - BINDING_SLACK then
        hold(b, now + waits[i])
      end
    end
    save_all()
    return {{0, fmt(longest), stamp}}
  end
  for _, b in ipairs(buckets) do
    b.t = math.max(b.t, now) + b.amount / b.rate
    b.dirty = true
    release(b)
  end
  save_all()
  return {{1, '0', stamp}}
elseif op == 'adjust' then -- never fills a bucket beyond full
  for _, b in ipairs(buckets) do
    b.t = math.max(b.t + b.amount / b.rate, now - b.burst / b.rate)
    b.dirty = true
  end
elseif op == 'pause' then
  local untilv = now + tonumber(ARGV[3])
  for _, b in ipairs(buckets) do
    pause_bucket(b, untilv)
  end
elseif op == 'release' then
  for _, b in ipairs(buckets) do
    release(b)
  end
else
  return redis.error_reply('pyarallel-redis: unknown operation ' .. tostring(op))
end
save_all()
return {{1, '0', stamp}}
"""
