-- holdfast's Redis library, part 2 of 5 (01_prelude.lua has the calling convention and the keys):
-- the lease, waiter and lock-delay records and the indexes each keeps, the history, the fence.

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

-- A field of meta to write when the call answers.
local function setMeta(field, v) metaOut[#metaOut + 1] = field; metaOut[#metaOut + 1] = v end
-- Writes the fields of meta this call changed (a field set twice: the later value wins).
local function flushMeta()
  if #metaOut > 0 then call('HSET', k('meta'), unpack(metaOut)) end
  metaOut = {}
end

-- Writes lo[z] to meta when it differs from what meta holds.
local function storeLo(z)
  local v = lo[z] and dec(lo[z]) or 'e'
  if stored[z] ~= v then
    setMeta('lo:' .. z, v)
    stored[z] = v
  end
end
local function readHead(z)
  local top = call('ZRANGE', k(z), 0, 0, 'WITHSCORES')
  lo[z] = top[2] and tonumber(top[2]) or false
  exact[z] = true
  storeLo(z)
end
-- Reads meta's fence, history id and due bounds (every writing function, first thing in settle()).
local function loadMeta()
  local m = call('HMGET', k('meta'), 'fence', 'hist', 'lo:lexp', 'lo:wdue', 'lo:ddue')
  lastFence = m[1] or '0'
  lastHist = tonumber(m[2]) or 0
  stored = {}
  for i, z in ipairs(DUE_SETS) do
    local v = m[i + 2]
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
  if lastHist == nil then error('holdfast: the history id was not loaded') end
  lastHist = lastHist + 1
  setMeta('hist', dec(lastHist))
  local id = lastHist
  local e = { id = id, at = at, type = etype, owner = l.owner, fence = l.fence, resources = l.res, by = by or NULL, reason = reason or NULL }
  -- Trimmed back to the limit once it is 64 over (reads never look past the limit).
  if call('LPUSH', k('hist'), cjson.encode(e)) >= histLimit + 64 then call('LTRIM', k('hist'), 0, histLimit - 1) end
end

local function nextFence()
  if lastFence == nil then error('holdfast: the fence was not loaded') end
  lastFence = dec(math.max(tonumber(lastFence) + 1, nowUs))
  setMeta('fence', lastFence)
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

