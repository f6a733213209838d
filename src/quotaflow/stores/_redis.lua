-- quotaflow's shared engine: every store operation is one run of this script.
--
-- It implements, for Redis, the semantics of quotaflow.core (Engine, RateState, QuotaState,
-- LeaseState): see src/quotaflow/core/_rate_state.py for the algorithm and the proofs, and
-- src/quotaflow/stores/_redis.py for the calling protocol.
--
-- Numbers in Redis Lua are doubles. Times are integer microseconds (exact below 2^53: today's
-- dates plus any period short of centuries), amounts are integers below 10^15, and every
-- division is rounded against the caller: exactly when the operands allow it, else with a
-- relative margin. Keys of one namespace share one hash tag, so every key an operation
-- touches lives in one slot.
--
-- ARGV[1] is the operation, ARGV[2] the time in microseconds (negative: use Redis TIME),
-- then the quota period bounds the client computed (count, then spec, start, end each).
-- Replies: {1, now, ...} done; {0, now, ...} refused or unknown; {2, now, spec...} the
-- client must supply the period bounds of these quota specs at `now` and call again.

local pack, decode = cmsgpack.pack, cmsgpack.unpack
local floor, ceil = math.floor, math.ceil
local EXACT = 9007199254740992 -- 2^53: below it, integer arithmetic on doubles is exact
local UP, DOWN = 1 + 2 ^ -44, 1 - 2 ^ -44 -- margins where it is not
local SLACK = 64 -- stack entries kept beyond one per held reservation
local GRACE_MS = 60000 -- idle state lingers this long after it stops mattering

local op = ARGV[1]
local now = tonumber(ARGV[2])
if now < 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
end

local bounds = {}
local argi = 4
for _ = 1, tonumber(ARGV[3]) do
  bounds[ARGV[argi]] = { tonumber(ARGV[argi + 1]), tonumber(ARGV[argi + 2]) }
  argi = argi + 3
end
local missing = {} -- quota specs whose period bounds at `now` the client must supply

-- a * b / d rounded up (up = true) or down, for non-negative integers a, b and positive d.
local function muldiv(a, b, d, up)
  local num = a * b
  if num + d < EXACT then
    local q = floor(num / d)
    local r = num - q * d
    while r < 0 do q, r = q - 1, r + d end
    while r >= d do q, r = q + 1, r - d end
    if up and r > 0 then q = q + 1 end
    return q
  end
  local x = a * (b / d)
  if up then return ceil(x * UP) end
  local q = floor(x * DOWN)
  if q < 0 then return 0 end
  return q
end

-- Whether dn * p <= dt * m for non-negative integers; false when it cannot be told for sure.
local function surely_le(dn, p, dt, m)
  local lhs, rhs = dn * p, dt * m
  if lhs < EXACT and rhs < EXACT then return lhs <= rhs end
  return lhs * UP < rhs * DOWN
end

local function ms_until(t) -- milliseconds from now until microsecond time t, plus the grace
  local left = t - now
  if left < 0 then left = 0 end
  return ceil(left / 1000) + GRACE_MS
end

-- Rolling rates: a GCRA bucket with the exact refund bound ---------------------------------
-- Fields: b born (identity), r refill, p period_ns, c capacity, t tat (us), g gross, n net,
-- s since, v void, A/T/N the stack (gross before, time, net before); k the key (not stored).
--
-- The reservations held since the bucket was last full (their marks decide what compaction
-- keeps) are listed in I, flat triples {mark, expiry, rid}, up to INLINE of them; beyond
-- that in a sorted set beside the state, `<key>|h|<born>` (member "mark:rid", score the
-- expiry; z says it is in use, he is the expiry last set on it). Few calls are in flight per
-- bucket most of the time, and then holding costs no command at all.

local INLINE = 8

local function interval(st, n) -- microseconds to refill n units, rounded up
  if n <= 0 then return 0 end
  return muldiv(n, st.p, 1000 * st.r, true)
end

local function tolerance(st)
  return muldiv(st.c, st.p, 1000 * st.r, false)
end

local function new_rate(key, r, p, c)
  return { b = now, r = r, p = p, c = c, t = 0, g = 0, n = 0, s = 0, v = -1,
    A = {}, T = {}, N = {}, I = {}, k = key }
end

local function load_rate(key)
  local raw = redis.call('GET', key)
  if not raw then return nil end
  local st = decode(raw)
  st.k = key
  st.I = st.I or {}
  return st
end

local function held_key(st)
  return string.format('%s|h|%d', st.k, st.b)
end

local function save_rate(st)
  local key = st.k
  st.k = nil
  redis.call('SET', key, pack(st), 'PX', ms_until(st.t))
  st.k = key
end

local function forget_held(st) -- the bucket is full: nothing held so far can be refunded
  st.I = {}
  if st.z then
    redis.call('DEL', held_key(st))
    st.z, st.he = nil, nil
  end
end

local function prune_inline(st) -- drop expired reservations from the inline list
  local I, live = st.I, {}
  for j = 1, #I, 3 do
    if I[j + 1] > now then
      live[#live + 1], live[#live + 2], live[#live + 3] = I[j], I[j + 1], I[j + 2]
    end
  end
  st.I = live
end

local function held_count(st) -- live reservations held (expired ones are released)
  prune_inline(st)
  local count = #st.I / 3
  if st.z then
    local hk = held_key(st)
    redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
    count = count + redis.call('ZCARD', hk)
  end
  return count
end

local function held_marks(st) -- the marks of live reservations (expired ones are released)
  prune_inline(st)
  local I, marks = st.I, {}
  for j = 1, #I, 3 do marks[#marks + 1] = I[j] end
  if st.z then
    local hk = held_key(st)
    redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
    for _, member in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
      marks[#marks + 1] = tonumber(string.match(member, '^(%d+):'))
    end
  end
  return marks
end

local function keep_held_until(st, hk, exp)
  -- Extend the set's TTL past `exp`, a minute at a time so that most calls need not. Redis
  -- deletes a set that empties, and a new one has no TTL: check for that too.
  if exp > (st.he or 0) or redis.call('PTTL', hk) < 0 then
    st.he = exp + GRACE_MS * 1000
    redis.call('PEXPIRE', hk, ms_until(st.he))
  end
end

local function hold(st, mark, rid, exp)
  local I = st.I
  if #I >= 3 * INLINE then prune_inline(st) end
  I = st.I
  if #I < 3 * INLINE then
    I[#I + 1], I[#I + 2], I[#I + 3] = mark, exp, rid
    return
  end
  local hk = held_key(st)
  redis.call('ZADD', hk, exp, string.format('%d:%s', mark, rid))
  st.z = true
  keep_held_until(st, hk, exp)
end

local function find_inline(st, mark, rid)
  local I = st.I
  for j = 1, #I, 3 do
    if I[j] == mark and I[j + 2] == rid then return j end
  end
  return nil
end

local function release(st, mark, rid)
  local j = find_inline(st, mark, rid)
  if j then
    local I = st.I
    local last = #I - 2
    I[j], I[j + 1], I[j + 2] = I[last], I[last + 1], I[last + 2]
    I[last], I[last + 1], I[last + 2] = nil, nil, nil
  elseif st.z then
    redis.call('ZREM', held_key(st), string.format('%d:%s', mark, rid))
  end
end

local function renew_held(st, mark, rid, exp) -- whether anything changed
  local j = find_inline(st, mark, rid)
  if j then
    if exp > st.I[j + 1] then st.I[j + 1] = exp end
    return true
  end
  if st.z then
    local hk = held_key(st)
    if redis.call('ZADD', hk, 'XX', 'CH', exp, string.format('%d:%s', mark, rid)) == 1 then
      keep_held_until(st, hk, exp)
      return true
    end
  end
  return false
end

local function reconfigure(st, r, p, c)
  if st.t > now then
    local used = muldiv(st.t - now, 1000 * st.r, st.p, true)
    st.r, st.p, st.c = r, p, c
    st.t = now + interval(st, used)
  else
    st.r, st.p, st.c = r, p, c
  end
  st.A, st.T, st.N = {}, {}, {}
  st.s = st.g
end

local function rate_available_at(st, n)
  local start = st.t + interval(st, n) - tolerance(st)
  if start > now then return start end
  return now
end

-- Whether the stack entry at i can never bind again: entry j (later) holds at least as much.
local function dominated(st, ti, ni, tj, nj)
  return surely_le(nj - ni, st.p, tj - ti, 1000 * st.r)
end

local function bisect(A, mark) -- first position whose gross-before is >= mark
  local lo, hi = 1, #A + 1
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if A[mid] < mark then lo = mid + 1 else hi = mid end
  end
  return lo
end

local function compact(st, marks)
  -- Keep the entries held reservations ask for. Entries between two asked ones receive the
  -- same lifts forever after, so each group keeps its largest term under its first position.
  local A, T, N = st.A, st.T, st.N
  local asked = {}
  for _, mark in ipairs(marks) do
    local i = bisect(A, mark)
    if i <= #A then asked[i] = true end
  end
  local starts = {}
  for i in pairs(asked) do starts[#starts + 1] = i end
  table.sort(starts)
  local a, t, n = {}, {}, {}
  local unit = st.p / (1000 * st.r)
  for g = 1, #starts do
    local first, last = starts[g], (starts[g + 1] or (#A + 1)) - 1
    local best = first
    for k = first + 1, last do
      if (T[k] - T[best]) > (N[k] - N[best]) * unit then best = k end
    end
    a[g], t[g], n[g] = A[first], T[best], N[best]
  end
  st.A, st.T, st.N = a, t, n
end

local function take(st, n, rid, exp)
  local g = st.g
  if st.t <= now then
    -- A full bucket: refunds of anything before now are absorbed; start a fresh history.
    st.v = g
    st.A, st.T, st.N = {}, {}, {}
    st.n = 0
    st.t = now
    forget_held(st)
  else
    local A, T, N = st.A, st.T, st.N
    local k = #A
    while k > 0 and dominated(st, T[k], N[k], now, st.n) do
      A[k], T[k], N[k] = nil, nil, nil
      k = k - 1
    end
    A[k + 1], T[k + 1], N[k + 1] = g, now, st.n
    if k + 1 > SLACK and k + 1 > SLACK + held_count(st) then compact(st, held_marks(st)) end
  end
  st.t = st.t + interval(st, n)
  st.n = st.n + n
  st.g = g + n
  if rid then hold(st, st.g, rid, exp) end
  return st.g
end

local function refund_floor(st, refund, mark)
  local A, T, N = st.A, st.T, st.N
  local i = bisect(A, mark)
  if i > #A then return 0 end
  local floor_t = 0
  for k = i, #A do
    -- +1: a margin for the float comparisons that chose which entries to keep
    local f = T[k] + interval(st, st.n - N[k]) + 1
    if f > floor_t then floor_t = f end
    N[k] = N[k] - refund -- later admissions keep their holdings as net drops
  end
  while i > 1 and dominated(st, T[i - 1], N[i - 1], T[i], N[i]) do
    table.remove(A, i - 1); table.remove(T, i - 1); table.remove(N, i - 1)
    i = i - 1
  end
  return floor_t
end

local function settle_rate(st, reserved, actual, mark, rid)
  release(st, mark, rid)
  if actual > reserved then
    take(st, actual - reserved)
    return
  end
  local refund = reserved - actual
  if refund == 0 or mark <= st.v then return end
  local tat = st.t - muldiv(refund, st.p, 1000 * st.r, false)
  if mark < st.s then
    local bound = now + interval(st, st.g - mark)
    if bound > tat then tat = bound end
  else
    local bound = refund_floor(st, refund, mark)
    if bound > tat then tat = bound end
    st.n = st.n - refund
  end
  if tat < st.t then st.t = tat end
end

local function rate_snapshot(st)
  local behind = st.t - now
  if behind < 0 then behind = 0 end
  local used = muldiv(behind, 1000 * st.r, st.p, true)
  return { used, behind }
end

-- Calendar quotas: usage within the period [s, e) ----------------------------------------

local function period(spec) -- bounds of the period containing now, or nil (then requested)
  local b = bounds[spec]
  if b and b[1] <= now and now < b[2] then return b end
  missing[#missing + 1] = spec
  return nil
end

local function load_quota(key, spec)
  local raw = redis.call('GET', key)
  local st = raw and decode(raw) or { s = 0, e = 0, u = 0 }
  if now >= st.e then
    local b = period(spec)
    if b then st.s, st.e, st.u = b[1], b[2], 0 end
  end
  return st
end

local function save_quota(key, st)
  redis.call('SET', key, pack(st), 'PX', ms_until(st.e))
end

-- Concurrency leases: a sorted set of reservation id -> expiry -----------------------------

local function lease_count(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  return redis.call('ZCARD', key)
end

local function lease_available_at(key, c)
  if lease_count(key) < c then return now end
  return tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
end

local function save_leases(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
  if last then redis.call('PEXPIRE', key, ms_until(tonumber(last))) end
end

-- Operations ------------------------------------------------------------------------------

local function reserve()
  -- ARGV after the bounds: rid, ttl_us, claim count, then one string per claim of eight
  -- space-separated fields: kind ('r' rate, 'q' quota, 'c' concurrency), amount, usage
  -- index, three parameters (r: refill, period_ns, capacity; q: capacity, 0, 0; c: capacity,
  -- ttl_us, 0), the quota's calendar spec (or empty) and the scope (named in release
  -- notifications; it may contain spaces).
  -- KEYS: the reservation, then one state key per claim.
  local rid, ttl = ARGV[argi], tonumber(ARGV[argi + 1])
  local count = tonumber(ARGV[argi + 2])
  local base = argi + 3
  local raw = redis.call('GET', KEYS[1])
  if raw and decode(raw).e > now then return { 1, now } end
  local claims, states = {}, {}
  local scopes = {}
  for i = 1, count do
    local kind, amount, index, p1, p2, p3, spec, scope =
      string.match(ARGV[base + i - 1], '^(%a) (%d+) (%-?%d+) (%d+) (%d+) (%d+) (%S*) (.*)$')
    if not kind then
      return redis.error_reply('quotaflow: malformed claim ' .. tostring(ARGV[base + i - 1]))
    end
    local claim = { kind, tonumber(amount), tonumber(index), tonumber(p1), tonumber(p2),
      tonumber(p3), spec }
    claims[i], scopes[i] = claim, scope
    local key = KEYS[i + 1]
    if claim[1] == 'r' then
      local st = load_rate(key)
      if not st then
        st = new_rate(key, claim[4], claim[5], claim[6])
      elseif st.r ~= claim[4] or st.p ~= claim[5] or st.c ~= claim[6] then
        reconfigure(st, claim[4], claim[5], claim[6])
        st.dirty = true
      end
      states[i] = st
    elseif claim[1] == 'q' then
      local st = load_quota(key, claim[7])
      if st.c ~= claim[4] then st.c = claim[4]; st.dirty = true end
      states[i] = st
    end
  end
  if #missing > 0 then return { 2, now, unpack(missing) } end
  local slot, binding = now, 0
  for i = 1, count do
    local claim, st = claims[i], states[i]
    local amount, at = claim[2], now
    if claim[1] == 'r' then
      if amount > 0 then at = rate_available_at(st, amount) end
    elseif claim[1] == 'q' then
      if amount > 0 and st.u + amount > st.c then at = st.e end
    else
      at = lease_available_at(KEYS[i + 1], claim[4])
    end
    if at > slot then slot, binding = at, i end
  end
  if binding > 0 then
    for i = 1, count do
      if states[i] and states[i].dirty then
        states[i].dirty = nil
        if claims[i][1] == 'r' then save_rate(states[i]) end
        if claims[i][1] == 'q' then save_quota(KEYS[i + 1], states[i]) end
      end
    end
    return { 0, now, slot, binding - 1 }
  end
  local exp = now + ttl
  local entries = {}
  for i = 1, count do
    local claim, st, key = claims[i], states[i], KEYS[i + 1]
    local amount = claim[2]
    if claim[1] == 'r' then
      local mark = take(st, amount, rid, exp)
      st.dirty = nil
      save_rate(st)
      entries[i] = { key, 'r', claim[3], amount, mark, st.b, claim[4], claim[5], claim[6] }
    elseif claim[1] == 'q' then
      st.u = st.u + amount
      st.dirty = nil
      save_quota(key, st)
      entries[i] = { key, 'q', claim[3], amount, st.s, claim[4], claim[7] }
    else
      redis.call('ZADD', key, now + claim[5], rid)
      save_leases(key)
      entries[i] = { key, 'c', -1, 1, 0, claim[4], claim[5] }
    end
  end
  redis.call('SET', KEYS[1], pack({ e = exp, t = ttl, E = entries, S = scopes }),
    'PX', ms_until(exp + ttl))
  return { 1, now }
end

local function settle()
  -- ARGV after the bounds: cancel (1) or not (0), the five usage amounts, the id, and the
  -- caller's origin tag. Scopes that got capacity back are published on `<prefix>released`
  -- as "origin\nscope\nscope...", so that waiters in other processes try again at once.
  -- KEYS: the reservation (the state keys it names share its hash tag).
  local raw = redis.call('GET', KEYS[1])
  if not raw then return { 0, now } end
  local rec = decode(raw)
  if rec.e + rec.t <= now then -- past the late-overrun window (Redis expires it by then too)
    redis.call('DEL', KEYS[1])
    return { 0, now }
  end
  local rid = ARGV[argi + 6]
  local cancel = ARGV[argi] == '1'
  local live = rec.e > now
  local states = {}
  for i, entry in ipairs(rec.E) do
    if entry[2] == 'r' then
      states[i] = load_rate(entry[1])
    elseif entry[2] == 'q' then
      states[i] = load_quota(entry[1], entry[7])
    end
  end
  if #missing > 0 then return { 2, now, unpack(missing) } end
  local freed = {}
  for i, entry in ipairs(rec.E) do
    local key, kind, index, reserved, mark = entry[1], entry[2], entry[3], entry[4], entry[5]
    local spent = 1
    if cancel then spent = 0 elseif index >= 0 then spent = tonumber(ARGV[argi + 1 + index]) end
    if kind == 'c' then
      if redis.call('ZREM', key, rid) == 1 then freed[i] = true end
    elseif kind == 'r' then
      local st = states[i]
      if live and st and st.b == entry[6] then
        settle_rate(st, reserved, spent, mark, rid)
        if spent < reserved then freed[i] = true end
        save_rate(st)
      elseif spent > reserved then
        -- forgotten (past its TTL) or its state went idle and was dropped: a refund is moot,
        -- an overrun is still real
        st = st or new_rate(key, entry[7], entry[8], entry[9])
        take(st, spent - reserved)
        save_rate(st)
      end
    else
      local st = states[i]
      st.c = st.c or entry[6]
      if spent > reserved then
        st.u = st.u + spent - reserved
      elseif live and mark == st.s then
        st.u = st.u - (reserved - spent)
        freed[i] = true
        if st.u < 0 then st.u = 0 end
      end
      save_quota(key, st)
    end
  end
  redis.call('DEL', KEYS[1])
  if rec.S and next(freed) then
    local message, seen = { ARGV[argi + 7] }, {}
    for i in pairs(freed) do
      local scope = rec.S[i]
      if scope and not seen[scope] then
        seen[scope] = true
        message[#message + 1] = scope
      end
    end
    redis.call('PUBLISH', string.match(KEYS[1], '^(.-}:)') .. 'released', table.concat(message, '\n'))
  end
  if live then return { 1, now } end
  return { 0, now }
end

local function renew()
  -- ARGV after the bounds: ttl_us, the id. KEYS: the reservation.
  local raw = redis.call('GET', KEYS[1])
  if not raw then return { 0, now } end
  local rec = decode(raw)
  if rec.e <= now then return { 0, now } end
  local rid = ARGV[argi + 1]
  local ttl = tonumber(ARGV[argi])
  for _, entry in ipairs(rec.E) do
    if entry[2] == 'c' then
      local expiry = redis.call('ZSCORE', entry[1], rid)
      if not expiry or tonumber(expiry) <= now then return { 0, now } end
    end
  end
  local exp = now + ttl
  for _, entry in ipairs(rec.E) do
    if entry[2] == 'c' then
      redis.call('ZADD', entry[1], 'XX', now + entry[7], rid)
      save_leases(entry[1])
    elseif entry[2] == 'r' then
      local st = load_rate(entry[1])
      if st and st.b == entry[6] and renew_held(st, entry[5], rid, exp) then
        save_rate(st)
      end
    end
  end
  rec.e, rec.t = exp, ttl
  redis.call('SET', KEYS[1], pack(rec), 'PX', ms_until(exp + ttl))
  return { 1, now }
end

local function snapshot()
  -- ARGV after the bounds: limit count, then one string per limit: "kind p1 p2 p3 spec" as
  -- in reserve. KEYS: one state key per limit.
  -- Reply: {1, now, used, remaining, resets_in_us, ...}
  local reply = { 1, now }
  local count = tonumber(ARGV[argi])
  for i = 1, count do
    local kind, p1, p2, p3, spec =
      string.match(ARGV[argi + i], '^(%a) (%d+) (%d+) (%d+) ?(%S*)$')
    if not kind then
      return redis.error_reply('quotaflow: malformed limit ' .. tostring(ARGV[argi + i]))
    end
    p1, p2, p3 = tonumber(p1), tonumber(p2), tonumber(p3)
    local key = KEYS[i]
    local used, resets = 0, 0
    if kind == 'r' then
      local st = load_rate(key)
      if st then
        if st.r ~= p1 or st.p ~= p2 or st.c ~= p3 then reconfigure(st, p1, p2, p3) end
        local s = rate_snapshot(st)
        used, resets = s[1], s[2]
      end
      reply[#reply + 1], reply[#reply + 2] = used, math.max(0, p3 - used)
    elseif kind == 'q' then
      local st = load_quota(key, spec)
      used, resets = st.u, st.e - now
      reply[#reply + 1], reply[#reply + 2] = used, math.max(0, p1 - used)
    else
      used = lease_count(key)
      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
      if last then resets = tonumber(last) - now end
      reply[#reply + 1], reply[#reply + 2] = used, math.max(0, p1 - used)
    end
    reply[#reply + 1] = resets
  end
  if #missing > 0 then return { 2, now, unpack(missing) } end
  return reply
end

if op == 'reserve' then return reserve() end
if op == 'settle' then return settle() end
if op == 'renew' then return renew() end
if op == 'snapshot' then return snapshot() end
return redis.error_reply('quotaflow: unknown operation ' .. tostring(op))
