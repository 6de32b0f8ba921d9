#!lua name=holdfast_@V@
--[[
holdfast's lock table as one library of Redis Functions (Redis 7.0+), in five files loaded as one
(scripts/embed-lua.mjs joins library/*.lua in name order): this prelude (calling convention, keys,
per-call state), 02_records, 03_blockers, 04_operations, 05_reads. Each function is one
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
  meta HASH fence, seq, hist, delay, lo:lexp, lo:wdue, lo:ddue (lower bounds of the due sets, 'e': empty);
       a writing function reads fence, hist and the bounds first and writes what changed last, in one HSET
       (Redis rolls nothing back: a call that fails midway, a bug, leaves meta as it was; no fence
       repeats, as fences stay above TIME in µs, but a history id may)
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
-- meta holds; lastFence and lastHist, meta's fence and last history id. metaOut: the fields of meta
-- this call changed, written with one HSET when it answers (flushMeta).
local DUE_SETS = { 'lexp', 'wdue', 'ddue' }
local lo, exact, stored, lastFence, lastHist, metaOut
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
  lo, exact, stored, lastFence, lastHist, metaOut = {}, {}, nil, nil, nil, {}
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

