#!lua name=holdfast_@V@
--[[
holdfast's lock table as one library of Redis Functions (Redis 7.0+). Each function is one
atomic operation and one round trip; it mirrors src/stores/table/operations.ts and blockers.ts
(conflicts by key path, blockers, queue order, lock-delay, requestId). Time is the server's
`TIME`, read once per call; no client time is passed in.

Calling convention (every function):
  KEYS[1]  the namespace base `hf:{<prefix>}:`. Every key the library touches starts with it, so
           they all hash to one slot (Redis Cluster: multi-key operations stay atomic).
  ARGV[1]  origin: the calling store object's id (its inbox stream is `<base>in:<origin>`)
  ARGV[2]  history limit (events kept)
  ARGV[3..] the operation's arguments, listed at each function.
Writing functions answer a JSON string
  {"value": <the operation's answer>, "changes": [<StoreChange>], "nextDue": ms|null, "now": ms,
   "error": {"field","message"}|absent}
Fences, kept and answered as decimal strings (cjson keeps 14 digits), are
  max(last fence + 1, TIME in microseconds): strictly increasing even when a crash loses the last
  writes (AOF everysec) or a lagging replica takes over, unless the server clock steps back.
Metadata is kept as the JSON text the client sent (never decoded here) and answered as a string.

Keys under the base:
  meta HASH fence, seq, hist, delay, lo:lexp, lo:wdue, lo:ddue (lower bounds of the due sets, 'e': empty)
  leases HASH id -> lease JSON     lexp ZSET expiry -> id
  ended ZSET end time -> id (the last 100000, trimmed now and then)   rid HASH owner\0requestId -> id   own:<owner> SET ids
  hx:<key> HASH lease id -> code (held rows on the key; code `e`, `s` or `s<limit>`)
  hu:<key> HASH `<lease id>|<held key>` -> code (held rows strictly below the key)
  waiters HASH id -> waiter JSON   wdue ZSET min(aliveUntil, deadline) -> id
  wh HASH id -> `<min(aliveUntil, deadline)>,<enqueued>,<#owner>,<owner><metadata JSON>` (a queued holder, as listed)
  wx:<key> ZSET seq -> `<code>|<id>`   wu:<key> ZSET seq -> `<code>|<id>|<waiting key>`
  delays HASH n -> delay JSON   ddue ZSET until -> n   dx:<key> SET n   du:<key> SET n
  hist LIST newest first (history JSON)   in:<origin> STREAM grants of that origin's waiters
]]

-- redis.call is not reachable while FUNCTION LOAD runs the library's body: looked up per call.
local function call(...) return redis.call(...) end
local INF = 1 / 0
local QUEUED_LISTED = 20
local UNKNOWN_END_MS = 1000
local ENDED_KEPT = 100000
local SETTLE_BATCH = 256
local INBOX_LEN = 1000
local INBOX_TTL_MS = 3600000

-- Per-call state.
local B, now, nowUs, origin, histLimit
local L, W, changes
-- The due sets (lease expiries, waiter deadlines, lock-delays). meta keeps for each a lower bound
-- on its scores (`lo:<set>`, 'e' when empty), lowered in the same call as any ZADD below it, so a
-- call reads a set only when something in it may be due. Per call, loaded by settle(): lo[z] the
-- bound (false: the set is empty), exact[z] whether it is the set's lowest score, stored[z] what
-- meta holds; lastFence, meta's fence.
local DUE_SETS = { 'lexp', 'wdue', 'ddue' }
local lo, exact, stored, lastFence
-- cjson is not reachable while the library loads either: set by begin().
local NULL

local function k(name) return B .. name end

local function begin(keys, args)
  NULL = cjson.null
  B = keys[1]
  origin = args[1]
  histLimit = tonumber(args[2]) or 10000
  local t = call('TIME')
  nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
  now = math.floor(nowUs / 1000)
  L, W, changes = {}, {}, {}
  lo, exact, stored, lastFence = {}, {}, nil, nil
end

local function dec(n) return string.format('%d', n) end
local function isnull(v) return v == nil or v == NULL end

local function ancestors(key)
  local out, i = {}, 1
  while true do
    local j = string.find(key, '/', i, true)
    if not j then return out end
    out[#out + 1] = string.sub(key, 1, j - 1)
    i = j + 1
  end
end

local function codeOf(r)
  if r.mode == 'exclusive' then return 'e' end
  if isnull(r.limit) then return 's' end
  return 's' .. dec(r.limit)
end
local function modeOf(code) return string.sub(code, 1, 1) == 'e' and 'exclusive' or 'shared' end
local function limitOf(code)
  if #code < 2 then return nil end
  return tonumber(string.sub(code, 2))
end
local function rlimit(r) if isnull(r.limit) then return nil end return r.limit end
local function freedBy(resources, freed)
  freed = freed or {}
  for _, r in ipairs(resources) do freed[r.key] = true end
  return freed
end
local function keysOf(resources)
  local out = {}
  for i, r in ipairs(resources) do out[i] = r.key end
  return out
end

local function change(ctype, owner, keys, fence, granted, at)
  local c = { type = ctype, owner = owner, keys = keys, fence = fence or NULL, granted = granted or {}, at = at or now }
  changes[#changes + 1] = c
  return c
end

-- Records ----------------------------------------------------------------------------------

-- A record of the `hash` (leases or waiters) by id, decoded once per call (`cache`: L or W).
local function record(cache, hash, id)
  local r = cache[id]
  if r == nil then
    local j = call('HGET', k(hash), id)
    r = j and cjson.decode(j) or false
    cache[id] = r
  end
  return r or nil
end
local function lease(id) return record(L, 'leases', id) end
local function waiter(id) return record(W, 'waiters', id) end

-- Writes lo[z] to meta when it differs from what meta holds.
local function storeLo(z)
  local v = lo[z] and dec(lo[z]) or 'e'
  if stored[z] ~= v then
    call('HSET', k('meta'), 'lo:' .. z, v)
    stored[z] = v
  end
end
local function readHead(z)
  local top = call('ZRANGE', k(z), 0, 0, 'WITHSCORES')
  lo[z] = top[2] and tonumber(top[2]) or false
  exact[z] = true
  storeLo(z)
end
-- Reads meta's fence and due bounds (every writing function, first thing in settle()).
local function loadMeta()
  local m = call('HMGET', k('meta'), 'fence', 'lo:lexp', 'lo:wdue', 'lo:ddue')
  lastFence = m[1] or '0'
  stored = {}
  for i, z in ipairs(DUE_SETS) do
    local v = m[i + 1]
    stored[z] = v or nil
    if not v then readHead(z)
    elseif v == 'e' then lo[z], exact[z] = false, true
    else lo[z], exact[z] = tonumber(v), false end
  end
end
-- ZADD to a due set; `fresh`: the member is new. A score below the bound lowers it in meta now.
local function dueAdd(z, score, member, fresh)
  if stored == nil then error('holdfast: the due bounds were not loaded') end
  call('ZADD', k(z), score, member)
  if lo[z] == false or score < lo[z] then
    -- Below every other score: the set's lowest, whether or not the member was there.
    lo[z], exact[z] = score, true
    storeLo(z)
  elseif not fresh then
    exact[z] = false -- the member may have been the lowest
  end
end
-- ZREM from a due set. The bound stays a bound; a waiter or delay set that empties says so.
local function dueRem(z, member)
  call('ZREM', k(z), member)
  exact[z] = false
  if z ~= 'lexp' and call('ZCARD', k(z)) == 0 then
    lo[z], exact[z] = false, true
    storeLo(z)
  end
end
-- False only when the set is known to be empty.
local function maybeAny(z) return lo[z] ~= false end

local function ridKey(owner, rid) return owner .. '\0' .. rid end

local function insertLease(l)
  L[l.id] = l
  call('HSET', k('leases'), l.id, cjson.encode(l))
  dueAdd('lexp', l.exp, l.id, true)
  call('SADD', k('own:' .. l.owner), l.id)
  if l.rid ~= '' then call('HSET', k('rid'), ridKey(l.owner, l.rid), l.id) end
  for _, r in ipairs(l.res) do
    local code = codeOf(r)
    call('HSET', k('hx:' .. r.key), l.id, code)
    for _, a in ipairs(ancestors(r.key)) do call('HSET', k('hu:' .. a), l.id .. '|' .. r.key, code) end
  end
end

local function deleteLease(l)
  L[l.id] = false
  call('HDEL', k('leases'), l.id)
  dueRem('lexp', l.id)
  call('SREM', k('own:' .. l.owner), l.id)
  if l.rid ~= '' then call('HDEL', k('rid'), ridKey(l.owner, l.rid)) end
  for _, r in ipairs(l.res) do
    call('HDEL', k('hx:' .. r.key), l.id)
    for _, a in ipairs(ancestors(r.key)) do call('HDEL', k('hu:' .. a), l.id .. '|' .. r.key) end
  end
  -- The ended ids are trimmed to ENDED_KEPT on one end in 64 (so up to 63 more are kept).
  if call('ZADD', k('ended'), now, l.id) == 1 and nowUs % 64 == 0 then
    local n = call('ZCARD', k('ended'))
    if n > ENDED_KEPT then call('ZREMRANGEBYRANK', k('ended'), 0, n - ENDED_KEPT - 1) end
  end
end

-- What a queued waiter lists as a holder, read without decoding its record (a queue's answers
-- list the first QUEUED_LISTED again and again): `<min(alive, deadline)>,<enq>,<#owner>,<owner><meta>`.
local function holderInfo(w)
  return dec(math.min(w.alive, w.deadline)) .. ',' .. dec(w.enq) .. ',' .. #w.owner .. ',' .. w.owner .. w.meta
end
local function parseHolderInfo(s)
  local c1 = string.find(s, ',', 1, true)
  local c2 = string.find(s, ',', c1 + 1, true)
  local c3 = string.find(s, ',', c2 + 1, true)
  local n = tonumber(string.sub(s, c2 + 1, c3 - 1))
  return tonumber(string.sub(s, 1, c1 - 1)), tonumber(string.sub(s, c1 + 1, c2 - 1)), string.sub(s, c3 + 1, c3 + n), string.sub(s, c3 + n + 1)
end

local function insertWaiter(w)
  W[w.id] = w
  call('HSET', k('waiters'), w.id, cjson.encode(w))
  call('HSET', k('wh'), w.id, holderInfo(w))
  dueAdd('wdue', math.min(w.alive, w.deadline), w.id, true)
  if w.rid ~= '' then call('HSET', k('rid'), ridKey(w.owner, w.rid), w.id) end
  for _, r in ipairs(w.res) do
    local code = codeOf(r)
    call('ZADD', k('wx:' .. r.key), w.seq, code .. '|' .. w.id)
    for _, a in ipairs(ancestors(r.key)) do call('ZADD', k('wu:' .. a), w.seq, code .. '|' .. w.id .. '|' .. r.key) end
  end
end

local function saveWaiter(w)
  W[w.id] = w
  call('HSET', k('waiters'), w.id, cjson.encode(w))
  call('HSET', k('wh'), w.id, holderInfo(w))
  dueAdd('wdue', math.min(w.alive, w.deadline), w.id, false)
end

-- A waiter's heartbeat; its grant is pushed to the caller's inbox from now on.
local function touch(w)
  w.alive = now + w.wttl
  w.origin = origin
  saveWaiter(w)
end

local function deleteWaiter(w)
  W[w.id] = false
  call('HDEL', k('waiters'), w.id)
  call('HDEL', k('wh'), w.id)
  dueRem('wdue', w.id)
  if w.rid ~= '' then call('HDEL', k('rid'), ridKey(w.owner, w.rid)) end
  for _, r in ipairs(w.res) do
    local code = codeOf(r)
    call('ZREM', k('wx:' .. r.key), code .. '|' .. w.id)
    for _, a in ipairs(ancestors(r.key)) do call('ZREM', k('wu:' .. a), code .. '|' .. w.id .. '|' .. r.key) end
  end
end

local function insertDelay(key, untilAt, l, since)
  local n = call('HINCRBY', k('meta'), 'delay', 1)
  local d = { key = key, ['until'] = untilAt, owner = l.owner, fence = l.fence, since = since, meta = l.meta }
  call('HSET', k('delays'), n, cjson.encode(d))
  dueAdd('ddue', untilAt, n, true)
  call('SADD', k('dx:' .. key), n)
  for _, a in ipairs(ancestors(key)) do call('SADD', k('du:' .. a), n) end
end

local function deleteDueDelays(freed)
  local due = call('ZRANGEBYSCORE', k('ddue'), '-inf', now, 'LIMIT', 0, SETTLE_BATCH)
  for _, n in ipairs(due) do
    local j = call('HGET', k('delays'), n)
    dueRem('ddue', n)
    if j then
      local d = cjson.decode(j)
      call('HDEL', k('delays'), n)
      call('SREM', k('dx:' .. d.key), n)
      for _, a in ipairs(ancestors(d.key)) do call('SREM', k('du:' .. a), n) end
      freed[d.key] = true
    end
  end
end

local function delaysRelatedTo(key)
  if not maybeAny('ddue') then return {} end
  local ids = call('SMEMBERS', k('dx:' .. key))
  for _, a in ipairs(ancestors(key)) do
    for _, n in ipairs(call('SMEMBERS', k('dx:' .. a))) do ids[#ids + 1] = n end
  end
  for _, n in ipairs(call('SMEMBERS', k('du:' .. key))) do ids[#ids + 1] = n end
  local out = {}
  for _, n in ipairs(ids) do
    local j = call('HGET', k('delays'), n)
    if j then out[#out + 1] = cjson.decode(j) end
  end
  return out
end

local function anyDelay(key)
  if not maybeAny('ddue') then return false end
  if call('SCARD', k('dx:' .. key)) > 0 or call('SCARD', k('du:' .. key)) > 0 then return true end
  for _, a in ipairs(ancestors(key)) do
    if call('SCARD', k('dx:' .. a)) > 0 then return true end
  end
  return false
end

local function appendHistory(etype, reason, by, at, l)
  local id = call('HINCRBY', k('meta'), 'hist', 1)
  local e = { id = id, at = at, type = etype, owner = l.owner, fence = l.fence, resources = l.res, by = by or NULL, reason = reason or NULL }
  -- Trimmed back to the limit once it is 64 over (reads never look past the limit).
  if call('LPUSH', k('hist'), cjson.encode(e)) >= histLimit + 64 then call('LTRIM', k('hist'), 0, histLimit - 1) end
end

local function nextFence()
  if lastFence == nil then error('holdfast: the fence was not loaded') end
  lastFence = dec(math.max(tonumber(lastFence) + 1, nowUs))
  call('HSET', k('meta'), 'fence', lastFence)
  return lastFence
end

-- When the next sweep is due: no later than anything in the due sets (`exactly`: not earlier either).
local function nextDue(exactly)
  local best = nil
  for _, z in ipairs(DUE_SETS) do
    if exactly and not exact[z] then readHead(z) end
    local t = lo[z]
    if t and (best == nil or t < best) then best = t end
  end
  return best
end

-- Index reads ------------------------------------------------------------------------------

-- Held rows on `key`, its ancestors and descendants: { key, code, id }.
local function heldRelatedTo(key)
  local out = {}
  local function exact(at)
    local flat = call('HGETALL', k('hx:' .. at))
    for i = 1, #flat, 2 do out[#out + 1] = { key = at, id = flat[i], code = flat[i + 1] } end
  end
  exact(key)
  for _, a in ipairs(ancestors(key)) do exact(a) end
  local flat = call('HGETALL', k('hu:' .. key))
  for i = 1, #flat, 2 do
    local bar = string.find(flat[i], '|', 1, true)
    out[#out + 1] = { key = string.sub(flat[i], bar + 1), id = string.sub(flat[i], 1, bar - 1), code = flat[i + 1] }
  end
  return out
end

local function parseExact(member, score, key)
  local bar = string.find(member, '|', 1, true)
  return { code = string.sub(member, 1, bar - 1), id = string.sub(member, bar + 1), key = key, seq = tonumber(score) }
end
local function parseUnder(member, score)
  local b1 = string.find(member, '|', 1, true)
  local b2 = string.find(member, '|', b1 + 1, true)
  return { code = string.sub(member, 1, b1 - 1), id = string.sub(member, b1 + 1, b2 - 1), key = string.sub(member, b2 + 1), seq = tonumber(score) }
end

-- Queued rows related to `key` with seq < `below` (all when INF), at most `cap` per index: { key, code, id, seq }.
local function waitingRelatedTo(key, below, cap)
  if not maybeAny('wdue') then return {} end
  local max = below == INF and '+inf' or '(' .. dec(below)
  local out = {}
  local function range(name)
    if cap then return call('ZRANGEBYSCORE', k(name), '-inf', max, 'WITHSCORES', 'LIMIT', 0, cap) end
    return call('ZRANGEBYSCORE', k(name), '-inf', max, 'WITHSCORES')
  end
  local flat = range('wx:' .. key)
  for i = 1, #flat, 2 do out[#out + 1] = parseExact(flat[i], flat[i + 1], key) end
  for _, a in ipairs(ancestors(key)) do
    flat = range('wx:' .. a)
    for i = 1, #flat, 2 do out[#out + 1] = parseExact(flat[i], flat[i + 1], a) end
  end
  flat = range('wu:' .. key)
  for i = 1, #flat, 2 do out[#out + 1] = parseUnder(flat[i], flat[i + 1]) end
  return out
end

-- Blockers (blockers.ts) ----------------------------------------------------------------------

local function heldHolder(key, mode, l)
  return { key = key, mode = mode, owner = l.owner, state = 'held', acquiredAt = l.acq, expiresAt = l.exp, metadata = l.meta }
end

local function bySeq(a, b) return a.seq < b.seq end

local function firstInQueue(entries)
  table.sort(entries, bySeq)
  local out = {}
  for i = 1, math.min(#entries, QUEUED_LISTED) do out[i] = entries[i] end
  return out
end

-- Returns holders, lastEnd, firstEnd; or nil, field, message for a shared limit that disagrees.
local function findBlockers(resources, seq, selfId, heldFirst)
  local holders, lastEnd, firstEnd = {}, nil, nil
  local function ends(at, counts)
    if counts then lastEnd = lastEnd and math.max(lastEnd, at) or at end
    firstEnd = firstEnd and math.min(firstEnd, at) or at
  end
  local isNew = seq == INF
  local function mismatch(i, r, limit)
    return nil, 'resources[' .. (i - 1) .. '].limit',
      cjson.encode(r.key) .. ' is shared with limit ' .. (limit and dec(limit) or 'none') ..
      ' by its holders; every holder must agree, got ' .. (rlimit(r) and dec(r.limit) or 'none')
  end
  local sameKeyShared = {}
  for i, r in ipairs(resources) do
    local shared = {}
    for _, row in ipairs(heldRelatedTo(r.key)) do
      local l = row.id ~= selfId and lease(row.id)
      if l then
        local hmode = modeOf(row.code)
        local holder = heldHolder(row.key, hmode, l)
        if r.mode == 'shared' and hmode == 'shared' then
          if row.key == r.key then
            if isNew and limitOf(row.code) ~= rlimit(r) then return mismatch(i, r, limitOf(row.code)) end
            shared[#shared + 1] = { holder = holder, ['end'] = l.exp }
          end
        else
          holders[#holders + 1] = holder
          ends(l.exp, true)
        end
      end
    end
    if rlimit(r) and #shared >= r.limit then
      for _, s in ipairs(shared) do
        holders[#holders + 1] = s.holder
        ends(s['end'], true)
      end
    end
    for _, d in ipairs(delaysRelatedTo(r.key)) do
      holders[#holders + 1] = { key = d.key, mode = 'exclusive', owner = d.owner, state = 'delayed', acquiredAt = d.since, expiresAt = d['until'], metadata = d.meta }
      ends(d['until'], true)
    end
    sameKeyShared[i] = shared
  end
  if heldFirst and #holders > 0 then return holders, lastEnd, firstEnd end

  for i, r in ipairs(resources) do
    local shared = sameKeyShared[i]
    local queued, queuedShared = {}, {}
    -- An exclusive request is blocked by every earlier related waiter: the first ones listed are enough.
    local cap = r.mode == 'exclusive' and QUEUED_LISTED or nil
    for _, row in ipairs(waitingRelatedTo(r.key, seq, cap)) do
      if row.id ~= selfId then
        local wmode = modeOf(row.code)
        if r.mode == 'shared' and wmode == 'shared' then
          if row.key == r.key then
            if isNew and limitOf(row.code) ~= rlimit(r) then return mismatch(i, r, limitOf(row.code)) end
            queuedShared[#queuedShared + 1] = row
          end
        else
          queued[#queued + 1] = row
        end
      end
    end
    local function list(rows)
      local first = firstInQueue(rows)
      if #first == 0 then return end
      local ids = {}
      for j, row in ipairs(first) do ids[j] = row.id end
      local infos = call('HMGET', k('wh'), unpack(ids))
      for j, row in ipairs(first) do
        local drop, enq, owner, meta
        if infos[j] then
          drop, enq, owner, meta = parseHolderInfo(infos[j])
        else -- written before `wh` was kept
          local w = waiter(row.id)
          if w then drop, enq, owner, meta = math.min(w.alive, w.deadline), w.enq, w.owner, w.meta end
        end
        if owner then
          holders[#holders + 1] = { key = row.key, mode = modeOf(row.code), owner = owner, state = 'queued', acquiredAt = enq, expiresAt = NULL, metadata = meta }
          ends(drop, false)
        end
      end
    end
    list(queued)
    if rlimit(r) and #shared < r.limit and #shared + #queuedShared >= r.limit then
      for _, s in ipairs(shared) do
        holders[#holders + 1] = s.holder
        ends(s['end'], true)
      end
      list(queuedShared)
    end
  end
  return holders, lastEnd, firstEnd
end

-- The cheap form for promotion: true at the first blocker.
local function isBlocked(resources, seq, selfId)
  local below = '(' .. dec(seq)
  for _, r in ipairs(resources) do
    local exclusive = r.mode == 'exclusive'
    local sameKeyShared = 0
    local flat = call('HGETALL', k('hx:' .. r.key))
    for i = 1, #flat, 2 do
      if flat[i] ~= selfId then
        if exclusive or modeOf(flat[i + 1]) == 'exclusive' then return true end
        sameKeyShared = sameKeyShared + 1
      end
    end
    if rlimit(r) and sameKeyShared >= r.limit then return true end
    -- Rows on ancestors and descendants conflict unless both are shared.
    for _, a in ipairs(ancestors(r.key)) do
      flat = call('HGETALL', k('hx:' .. a))
      for i = 2, #flat, 2 do
        if exclusive or modeOf(flat[i]) == 'exclusive' then return true end
      end
    end
    flat = call('HGETALL', k('hu:' .. r.key))
    for i = 1, #flat, 2 do
      if string.sub(flat[i], 1, #selfId + 1) ~= selfId .. '|' and (exclusive or modeOf(flat[i + 1]) == 'exclusive') then return true end
    end
    if anyDelay(r.key) then return true end
    local function earlier(name) return call('ZRANGEBYSCORE', k(name), '-inf', below) end
    for _, m in ipairs(earlier('wx:' .. r.key)) do
      local code = string.sub(m, 1, string.find(m, '|', 1, true) - 1)
      if exclusive or modeOf(code) == 'exclusive' then return true end
      if rlimit(r) then
        sameKeyShared = sameKeyShared + 1
        if sameKeyShared >= r.limit then return true end
      end
    end
    for _, a in ipairs(ancestors(r.key)) do
      for _, m in ipairs(earlier('wx:' .. a)) do
        if exclusive or string.sub(m, 1, 1) == 'e' then return true end
      end
    end
    for _, m in ipairs(earlier('wu:' .. r.key)) do
      if exclusive or string.sub(m, 1, 1) == 'e' then return true end
    end
  end
  return false
end

-- Operations (operations.ts) ----------------------------------------------------------------

local function publicLease(l) return l end

local function push(w, c)
  if w.origin == nil or w.origin == '' then return end
  local inbox = k('in:' .. w.origin)
  call('XADD', inbox, 'MAXLEN', '~', INBOX_LEN, '*', 'c', cjson.encode(c))
  call('PEXPIRE', inbox, INBOX_TTL_MS)
end

local function grant(req, fromQueue)
  local l = {
    id = req.id, owner = req.owner, res = req.res, fence = nextFence(), acq = now, exp = now + req.ttl,
    ttl = req.ttl, rid = req.rid, meta = req.meta, delay = req.delay,
  }
  insertLease(l)
  appendHistory('acquired', nil, nil, now, l)
  local c = change('acquired', l.owner, keysOf(l.res), l.fence, { l.id })
  c.expiresAt = l.exp
  if fromQueue then push(req, c) end
  return l
end

local function endLease(l, etype, reason, by, at, delay)
  deleteLease(l)
  appendHistory(etype, reason, by, at, l)
  change(etype, l.owner, keysOf(l.res), l.fence, {}, at)
  if delay and l.delay > 0 and at + l.delay > now then
    for _, r in ipairs(l.res) do insertDelay(r.key, at + l.delay, l, at) end
  end
end

-- The first exclusive waiter on exactly `key` (its seq): every later waiter related to the key
-- is blocked by it (queued or granted), so promotion looks no further.
local function cutoffOf(key)
  local start = 0
  while true do
    local page = call('ZRANGE', k('wx:' .. key), start, start + 31, 'WITHSCORES')
    if #page == 0 then return INF end
    for i = 1, #page, 2 do
      if string.sub(page[i], 1, 1) == 'e' then return tonumber(page[i + 1]) end
    end
    start = start + 32
  end
end

local function promote(freed)
  if next(freed) == nil or not maybeAny('wdue') then return end
  local candidates, seen = {}, {}
  for key in pairs(freed) do
    local cutoff = cutoffOf(key)
    local max = cutoff == INF and '+inf' or dec(cutoff)
    local function add(flat, parse, strict)
      for i = 1, #flat, 2 do
        local row = parse(flat[i], flat[i + 1], key)
        if not seen[row.id] and (not strict or row.seq < cutoff) then
          seen[row.id] = true
          candidates[#candidates + 1] = row
        end
      end
    end
    add(call('ZRANGEBYSCORE', k('wx:' .. key), '-inf', max, 'WITHSCORES'), parseExact, false)
    for _, a in ipairs(ancestors(key)) do
      add(call('ZRANGEBYSCORE', k('wx:' .. a), '-inf', max, 'WITHSCORES'), parseExact, true)
    end
    add(call('ZRANGEBYSCORE', k('wu:' .. key), '-inf', max, 'WITHSCORES'), parseUnder, true)
  end
  table.sort(candidates, bySeq)
  for _, row in ipairs(candidates) do
    local w = waiter(row.id)
    if w and w.deadline > now and w.alive > now and not isBlocked(w.res, w.seq, w.id) then
      deleteWaiter(w)
      grant(w, true)
    end
  end
end

local function settle()
  loadMeta()
  for _, z in ipairs(DUE_SETS) do
    if lo[z] and lo[z] <= now and not exact[z] then readHead(z) end
  end
  local freed = {}
  if lo.lexp and lo.lexp <= now then
    for _, id in ipairs(call('ZRANGEBYSCORE', k('lexp'), '-inf', now, 'LIMIT', 0, SETTLE_BATCH)) do
      local l = lease(id)
      if l then
        endLease(l, 'expired', 'expiry', nil, l.exp, true)
        freedBy(l.res, freed)
      else
        dueRem('lexp', id)
      end
    end
    readHead('lexp')
  end
  if lo.wdue and lo.wdue <= now then
    for _, id in ipairs(call('ZRANGEBYSCORE', k('wdue'), '-inf', now, 'LIMIT', 0, SETTLE_BATCH)) do
      local w = waiter(id)
      if w then
        deleteWaiter(w)
        change('timed-out', w.owner, keysOf(w.res), nil, {}, math.min(w.deadline, w.alive))
        freedBy(w.res, freed)
      else
        dueRem('wdue', id)
      end
    end
    if lo.wdue ~= false then readHead('wdue') end
  end
  if lo.ddue and lo.ddue <= now then
    deleteDueDelays(freed)
    if lo.ddue ~= false then readHead('ddue') end
  end
  promote(freed)
end

local function hints(lastEnd, firstEnd)
  local retry = lastEnd and math.max(1, lastEnd - now) or UNKNOWN_END_MS
  local check = firstEnd and math.max(1, firstEnd - now) or UNKNOWN_END_MS
  return retry, check
end

local function queued(w)
  local holders, lastEnd, firstEnd = findBlockers(w.res, w.seq, w.id, true)
  if #holders == 0 then
    deleteWaiter(w)
    return { status = 'granted', lease = publicLease(grant(w, false)), now = now }
  end
  local retry, check = hints(lastEnd, firstEnd)
  return { status = 'queued', ticket = w.id, holders = holders, retryAfterMs = retry, nextCheckMs = check, now = now }
end

local function answer(value, err)
  local out = { value = value, changes = changes, nextDue = nextDue() or NULL, now = now }
  if err then out.error = err end
  return cjson.encode(out)
end

-- ARGV[3] request JSON {id, owner, res, ttl, rid ('' for none), meta (JSON text), delay}, ARGV[4] waitMs, ARGV[5] waiterTtlMs.
-- value: {status: granted, lease} | {status: busy, holders, retryAfterMs} | {status: queued, ticket, holders, retryAfterMs, nextCheckMs}
local function acquire(keys, args)
  begin(keys, args)
  local req = cjson.decode(args[3])
  local waitMs, waiterTtlMs = tonumber(args[4]), tonumber(args[5])
  settle()
  if req.rid ~= '' then
    local id = call('HGET', k('rid'), ridKey(req.owner, req.rid))
    if id then
      local l = lease(id)
      if l then return answer({ status = 'granted', lease = publicLease(l), now = now }) end
      local w = waiter(id)
      if w then
        touch(w)
        return answer(queued(w))
      end
    end
  end
  local busy = { status = 'busy', holders = {}, retryAfterMs = 0, now = now }
  if lease(req.id) or waiter(req.id) or call('ZSCORE', k('ended'), req.id) then
    return answer(busy, { field = 'id', message = 'this lease id was already used' })
  end
  local holders, lastEnd, firstEnd = findBlockers(req.res, INF, req.id, false)
  if holders == nil then return answer(busy, { field = lastEnd, message = firstEnd }) end
  if #holders == 0 then return answer({ status = 'granted', lease = publicLease(grant(req, false)), now = now }) end
  local retry, check = hints(lastEnd, firstEnd)
  if waitMs <= 0 then return answer({ status = 'busy', holders = holders, retryAfterMs = retry, now = now }) end
  local w = {
    id = req.id, owner = req.owner, res = req.res, ttl = req.ttl, rid = req.rid, meta = req.meta, delay = req.delay,
    seq = call('HINCRBY', k('meta'), 'seq', 1), enq = now, deadline = now + waitMs, alive = now + waiterTtlMs,
    wttl = waiterTtlMs, origin = origin,
  }
  insertWaiter(w)
  change('waiting', w.owner, keysOf(w.res), nil, {})
  return answer({ status = 'queued', ticket = w.id, holders = holders, retryAfterMs = retry, nextCheckMs = check, now = now })
end

-- ARGV[3] ticket. value: granted | queued (as acquire) | {status: gone}
local function poll(keys, args)
  begin(keys, args)
  local ticket = args[3]
  settle()
  local l = lease(ticket)
  if l then return answer({ status = 'granted', lease = publicLease(l), now = now }) end
  local w = waiter(ticket)
  if not w then return answer({ status = 'gone', now = now }) end
  -- The heartbeat is written only when a third of its period has passed, not on every poll.
  if w.alive - now < (w.wttl * 2) / 3 or w.origin ~= origin then touch(w) end
  return answer(queued(w))
end

-- ARGV[3] ticket, ARGV[4] by ('' for the lease's owner). value: true when a lease granted to it was released.
local function cancel(keys, args)
  begin(keys, args)
  local ticket = args[3]
  settle()
  local w = waiter(ticket)
  if w then
    deleteWaiter(w)
    change('left', w.owner, keysOf(w.res), nil, {})
    promote(freedBy(w.res))
    return answer(false)
  end
  local l = lease(ticket)
  if l then
    endLease(l, 'released', 'cancelled', (args[4] or '') ~= '' and args[4] or l.owner, now, false)
    promote(freedBy(l.res))
    return answer(true)
  end
  return answer(false)
end

-- ARGV[3] lease id, ARGV[4] ttlMs. value: {status: renewed, lease} | {status: lost|unknown}
local function renew(keys, args)
  begin(keys, args)
  local id, ttl = args[3], tonumber(args[4])
  settle()
  local l = lease(id)
  if not l then
    return answer({ status = call('ZSCORE', k('ended'), id) and 'lost' or 'unknown', now = now })
  end
  l.exp = now + ttl
  l.ttl = ttl
  call('HSET', k('leases'), id, cjson.encode(l))
  dueAdd('lexp', l.exp, id, false)
  return answer({ status = 'renewed', lease = publicLease(l), now = now })
end

-- ARGV[3] lease id, ARGV[4] by ('' for the lease's owner). value: true when released.
local function release(keys, args)
  begin(keys, args)
  local id = args[3]
  settle()
  local l = lease(id)
  if not l then return answer(false) end
  endLease(l, 'released', 'release', (args[4] or '') ~= '' and args[4] or l.owner, now, false)
  promote(freedBy(l.res))
  return answer(true)
end

local function endAll(ids, etype, reason, by)
  local freed, n = {}, 0
  for _, id in ipairs(ids) do
    local l = lease(id)
    if l then
      endLease(l, etype, reason, by, now, true)
      freedBy(l.res, freed)
      n = n + 1
    end
  end
  promote(freed)
  return n
end

-- ARGV[3] owner, ARGV[4] key ('' for every key), ARGV[5] by. value: leases released.
local function releaseOwner(keys, args)
  begin(keys, args)
  local owner, key, by = args[3], args[4], args[5]
  settle()
  local ids = {}
  for _, id in ipairs(call('SMEMBERS', k('own:' .. owner))) do
    local l = lease(id)
    if l then
      local match = key == ''
      for _, r in ipairs(l.res) do if r.key == key then match = true end end
      if match then ids[#ids + 1] = id end
    end
  end
  table.sort(ids, function(a, b) return tonumber(lease(a).fence) < tonumber(lease(b).fence) end)
  return answer(endAll(ids, 'released', 'release-owner', by))
end

-- ARGV[3] key, ARGV[4] by. value: leases ended.
local function forceRelease(keys, args)
  begin(keys, args)
  local key, by = args[3], args[4]
  settle()
  local ids = call('HKEYS', k('hx:' .. key))
  table.sort(ids, function(a, b) return tonumber(lease(a).fence) < tonumber(lease(b).fence) end)
  return answer(endAll(ids, 'forced', 'force', by))
end

-- value: the next due time (as nextDue).
local function sweep(keys, args)
  begin(keys, args)
  settle()
  return answer(nextDue(true) or NULL)
end

-- Read-only ---------------------------------------------------------------------------------

-- ARGV[3] lease id. Reply: {now, lease JSON or false}
local function get(keys, args)
  begin(keys, args)
  local j = call('HGET', k('leases'), args[3])
  if j and cjson.decode(j).exp > now then return { now, j } end
  return { now, false }
end

-- Reply: {now, number of leases, lease JSON..., waiter JSON...} (the client filters and orders).
local function list(keys, args)
  begin(keys, args)
  local leases = call('HVALS', k('leases'))
  local waiters = call('HVALS', k('waiters'))
  local out = { now, #leases }
  for _, j in ipairs(leases) do out[#out + 1] = j end
  for _, j in ipairs(waiters) do out[#out + 1] = j end
  return out
end

-- ARGV[3] key ('' any), ARGV[4] owner ('' any), ARGV[5] limit, ARGV[6] beforeId ('' none). Reply: event JSONs, newest first.
local function history(keys, args)
  begin(keys, args)
  local key, owner, limit, before = args[3], args[4], tonumber(args[5]), tonumber(args[6])
  local out, start = {}, 0
  while #out < limit and start < histLimit do
    local page = call('LRANGE', k('hist'), start, math.min(start + 255, histLimit - 1))
    if #page == 0 then break end
    for _, j in ipairs(page) do
      local e = cjson.decode(j)
      local ok = (before == nil or e.id < before) and (owner == '' or e.owner == owner)
      if ok and key ~= '' then
        ok = false
        for _, r in ipairs(e.resources) do if r.key == key then ok = true end end
      end
      if ok then
        out[#out + 1] = j
        if #out >= limit then break end
      end
    end
    start = start + 256
  end
  return out
end

local function register(name, fn, readOnly)
  redis.register_function({ function_name = 'hf@V@_' .. name, callback = fn, flags = readOnly and { 'no-writes' } or {} })
end

register('acquire', acquire)
register('poll', poll)
register('cancel', cancel)
register('renew', renew)
register('release', release)
register('release_owner', releaseOwner)
register('force_release', forceRelease)
register('sweep', sweep)
register('get', get, true)
register('list', list, true)
register('history', history, true)
