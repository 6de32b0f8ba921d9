-- holdfast's Redis library, part 3 of 5: reads of the key indexes, and who blocks a request
-- (the mirror of src/stores/table/blockers.ts).

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

-- The cheap form for a new exclusive request on one key: true when nothing is held, queued or
-- lock-delayed on the key, its ancestors or below it (every such row blocks it), with one EXISTS
-- of the index keys findBlockers would read (Redis deletes a hash, set or sorted set that empties).
local function clearForExclusive(key)
  local names, anc = { k('hx:' .. key), k('hu:' .. key) }, ancestors(key)
  for _, a in ipairs(anc) do names[#names + 1] = k('hx:' .. a) end
  if maybeAny('wdue') then
    names[#names + 1] = k('wx:' .. key)
    names[#names + 1] = k('wu:' .. key)
    for _, a in ipairs(anc) do names[#names + 1] = k('wx:' .. a) end
  end
  if maybeAny('ddue') then
    names[#names + 1] = k('dx:' .. key)
    names[#names + 1] = k('du:' .. key)
    for _, a in ipairs(anc) do names[#names + 1] = k('dx:' .. a) end
  end
  return call('EXISTS', unpack(names)) == 0
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

