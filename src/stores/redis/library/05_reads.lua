-- holdfast's Redis library, part 5 of 5: the read-only functions, and the registration of all.

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
