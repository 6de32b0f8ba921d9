-- holdfast's Redis library, part 4 of 5: the writing functions (the mirror of
-- src/stores/table/operations.ts), their inputs (ARGV) and answers listed at each.

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
  local due = nextDue()
  flushMeta()
  local out = { value = value, changes = changes, nextDue = due or NULL, now = now }
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
  if call('HEXISTS', k('leases'), req.id) == 1 or (maybeAny('wdue') and call('HEXISTS', k('waiters'), req.id) == 1)
    or call('ZSCORE', k('ended'), req.id) then
    return answer(busy, { field = 'id', message = 'this lease id was already used' })
  end
  local holders, lastEnd, firstEnd
  if #req.res == 1 and req.res[1].mode == 'exclusive' and clearForExclusive(req.res[1].key) then
    holders = {}
  else
    holders, lastEnd, firstEnd = findBlockers(req.res, INF, req.id, false)
  end
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

