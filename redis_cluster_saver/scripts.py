"""Same-slot Lua scripts: reads and thread-wide maintenance in one round trip.

Each script declares the thread's namespace-set key (so clusters and proxies route
it to the thread's slot) and derives the thread's other keys, all in that same
slot, from the thread's handle passed as ARGV[1] (see keys.ThreadKeys). Scripts
never compare strings with ``<``/``>`` (Lua's comparison follows the server's
locale); ordering is left to the sorted sets and to the client.
"""

from __future__ import annotations

from .codec import READ_FIELDS
from .keys import LUA_LAYOUT
from .plan import LuaScript

_TOUCH = (
    LUA_LAYOUT
    + r"""
local function touch(B, ttl)
  local nsk = k_ns(B)
  for _, ns in ipairs(redis.call('SMEMBERS', nsk)) do
    local ne = esc(ns)
    local reg = k_reg(B, ne)
    for _, id in ipairs(redis.call('ZRANGE', reg, 0, -1)) do
      redis.call('PEXPIRE', k_cp(B, ne, id), ttl)
      redis.call('PEXPIRE', k_w(B, ne, id), ttl)
    end
    redis.call('PEXPIRE', reg, ttl)
    redis.call('PEXPIRE', k_blobs(B, ne), ttl)
  end
  for _, wk in ipairs(redis.call('SMEMBERS', k_wk(B))) do redis.call('PEXPIRE', wk, ttl) end
  redis.call('PEXPIRE', k_wk(B), ttl)
  redis.call('PEXPIRE', nsk, ttl)
end
"""
)

_COMMON = (
    _TOUCH
    + "local READ_FIELDS = {"
    + ", ".join(f"'{f}'" for f in READ_FIELDS)
    + "}\n"
    + r"""
local function split(list)
  local out = {}
  if list then
    for f in string.gmatch(list, '[^\n]+') do out[#out + 1] = f end
  end
  return out
end

local function hmget_all(key, names)
  local vals = {}
  for i = 1, #names, 500 do
    local chunk = redis.call('HMGET', key, unpack(names, i, math.min(i + 499, #names)))
    for j = 1, #chunk do vals[#vals + 1] = chunk[j] end
  end
  return vals
end

-- a list value stored as a delta names its base: '+' count '\n' base '\n' items
-- (see deltas.py); a full value starts with a zero byte
local function delta_base(v)
  if not v or string.byte(v, 1) ~= 43 then return nil end
  local a = string.find(v, '\n', 1, true)
  return string.sub(v, a + 1, string.find(v, '\n', a + 1, true) - 1)
end

-- appends to out the (field, value) pairs of the bases v needs that seen lacks
local function add_bases(bk, v, seen, out)
  local base, n = delta_base(v), 0
  while base and not seen[base] and n < 64 do
    seen[base] = true
    v = redis.call('HGET', bk, base)
    if not v then return end
    out[#out + 1] = base
    out[#out + 1] = v
    base, n = delta_base(v), n + 1
  end
end

-- {ns, id, checkpoint fields (codec.READ_FIELDS), writes hash, blob values, parent's
-- writes (pre-v4 only)};
-- finish_entries then adds the delta bases as a 7th element
local function load_entry(B, ns, ne, id)
  local cp = redis.call('HMGET', k_cp(B, ne, id), unpack(READ_FIELDS))
  if not cp[1] then return nil end
  local w = redis.call('HGETALL', k_w(B, ne, id))
  local vals = hmget_all(k_blobs(B, ne), split(cp[5]))
  local pw = {}
  if tonumber(cp[4] or '4') < 4 and cp[3] ~= '' then
    pw = redis.call('HGETALL', k_w(B, ne, cp[3]))
  end
  return {ns, id, cp, w, vals, pw, {}}
end

-- each base is sent once per reply (the client looks bases up across entries).
-- Reads answer with one msgpack string (cmsgpack, in C), which the client parses in
-- C too, where nested RESP replies would be parsed in Python; cmsgpack writes
-- strings as msgpack str, and the client reads them back as bytes.
local function finish_entries(B, out)
  local seen = {}
  for _, e in ipairs(out) do
    if e[5] then  -- not a gone checkpoint's {ns, id, false}
      seen[e[1]] = seen[e[1]] or {}
      local bk = k_blobs(B, esc(e[1]))
      for i = 1, #e[5] do add_bases(bk, e[5][i], seen[e[1]], e[7]) end
    end
  end
  return out
end

-- drop blob fields no remaining checkpoint of the namespace refers to
local function gc_blobs(B, ne)
  local reg = k_reg(B, ne)
  local bk = k_blobs(B, ne)
  local used, bases = {}, {}
  for _, id in ipairs(redis.call('ZRANGE', reg, 0, -1)) do
    for _, f in ipairs(split(redis.call('HGET', k_cp(B, ne, id), 'blobs') or nil)) do
      if not used[f] then
        used[f] = true
        add_bases(bk, redis.call('HGET', bk, f), used, bases)
      end
    end
  end
  for _, f in ipairs(redis.call('HKEYS', bk)) do
    if not used[f] then redis.call('HDEL', bk, f) end
  end
end

local function drop_checkpoint(B, ne, id)
  redis.call('DEL', k_cp(B, ne, id), k_w(B, ne, id))
  redis.call('SREM', k_wk(B), k_w(B, ne, id))
  redis.call('ZREM', k_reg(B, ne), id)
end

-- after deletions: forget empty namespaces; returns 1 when the thread is gone
local function settle(B, ns)
  local ne = esc(ns)
  gc_blobs(B, ne)
  if redis.call('ZCARD', k_reg(B, ne)) == 0 then
    redis.call('DEL', k_reg(B, ne), k_blobs(B, ne))
    redis.call('SREM', k_ns(B), ns)
  end
end

-- keep the newest keep_n checkpoints of a namespace (and the ancestors a kept one
-- needs to rebuild its DeltaChannel state); drop the rest and values nothing uses
local function prune_ns(B, ns, keep_n)
  local ne = esc(ns)
  local reg = k_reg(B, ne)
  local bk = k_blobs(B, ne)
  local ids = redis.call('ZREVRANGEBYLEX', reg, '+', '-')
  local keep = {}
  for i = 1, math.min(keep_n, #ids) do
    keep[ids[i]] = true
    local counters = redis.call('HGET', k_cp(B, ne, ids[i]), 'm:counters_since_delta_snapshot')
    if counters then
      local remaining, n = {}, 0
      for ch, _ in pairs(cjson.decode(counters)) do
        remaining[esc(ch) .. ':'] = true
        n = n + 1
      end
      local cur = ids[i]
      while n > 0 and cur and cur ~= '' do
        local ck = k_cp(B, ne, cur)
        local list = redis.call('HGET', ck, 'blobs')
        if not list then break end
        keep[cur] = true
        for _, f in ipairs(split(list)) do
          local head = string.sub(f, 1, string.find(f, ':', 1, true))
          if remaining[head] and redis.call('HEXISTS', bk, f) == 1 then
            remaining[head] = nil
            n = n - 1
          end
        end
        cur = redis.call('HGET', ck, 'parent')
      end
    end
  end
  for _, id in ipairs(ids) do
    if not keep[id] then drop_checkpoint(B, ne, id) end
  end
  settle(B, ns)
end

-- retention on write: prune_ns, and drop the writes of pruned checkpoints that
-- landed after their checkpoint went (writes sort with their checkpoint's id: those
-- before the oldest kept one are a pruned checkpoint's; later ones may belong to a
-- checkpoint whose put has not landed yet, and stay)
local function retain(B, ns, keep_n)
  prune_ns(B, ns, keep_n)
  local ne = esc(ns)
  local head = k_w(B, ne, '')
  local wk = k_wk(B)
  local ids = redis.call('ZRANGE', k_reg(B, ne), 0, -1)
  if #ids == 0 then return end
  local oldest = ids[1]
  for _, w in ipairs(redis.call('SMEMBERS', wk)) do
    if string.sub(w, 1, #head) == head then  -- this namespace's: its id unescaped
      local id = string.sub(w, #head + 1)
      if string.find(id, '%', 1, true) then
        id = string.gsub(id, '%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end)
      end
      if id < oldest then
        redis.call('DEL', w)
        redis.call('SREM', wk, w)
      end
    end
  end
end
"""
)

READ = LuaScript(
    "read",
    _COMMON
    + r"""
-- ARGV: handle, mode ('id': that checkpoint in each namespace | 'list' | 'ids':
--       as 'list', answering {ns, id} pairs only), ttl ms,
--       limit (0: all), before id, wanted id, namespace count n, n namespaces
--       (n = 0: all), then filter (field, canonical JSON: codec.dump_json) pairs
local B, mode = ARGV[1], ARGV[2]
local ttl, limit, before, want = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local nn = tonumber(ARGV[7])
local nss = {}
for i = 1, nn do nss[i] = ARGV[7 + i] end
local filt = {}
for i = 8 + nn, #ARGV, 2 do filt[#filt + 1] = {ARGV[i], ARGV[i + 1]} end
if ttl > 0 then touch(B, ttl) end
local out = {}
if nn == 0 then nss = redis.call('SMEMBERS', k_ns(B)) end
-- a checkpoint the registry lists whose hash is gone answers {ns, id, false}: the
-- client tells a deletion in flight from a damaged thread (see reads.py)
if mode == 'id' then
  for _, ns in ipairs(nss) do
    local ne = esc(ns)
    local e = load_entry(B, ns, ne, want)
    if e then
      out[#out + 1] = e
    elseif #redis.call('ZREVRANGEBYLEX', k_reg(B, ne), '[' .. want, '[' .. want) > 0 then
      out[#out + 1] = {ns, want, false}
    end
  end
  return cmsgpack.pack(finish_entries(B, out))
end
local function matches(cpk)
  for _, f in ipairs(filt) do
    local v = redis.call('HGET', cpk, f[1])
    if v ~= f[2] and not (v == false and f[2] == 'null') then return false end
  end
  return true
end
for _, ns in ipairs(nss) do
  local ne = esc(ns)
  local reg = k_reg(B, ne)
  local upper = '+'
  if before ~= '' then upper = '(' .. before end
  local found = 0
  local batch = 64
  if limit > 0 and #filt == 0 then batch = limit end
  while limit == 0 or found < limit do
    local ids = redis.call('ZREVRANGEBYLEX', reg, upper, '-', 'LIMIT', 0, batch)
    for _, id in ipairs(ids) do
      local cpk = k_cp(B, ne, id)
      local e
      if matches(cpk) then
        if mode == 'ids' then
          if redis.call('EXISTS', cpk) == 1 then e = {ns, id} end
        else
          e = load_entry(B, ns, ne, id)
        end
        e = e or {ns, id, false}
      elseif #filt > 0 and redis.call('EXISTS', cpk) == 0 then
        e = {ns, id, false}
      end
      if e then
        out[#out + 1] = e
        if e[3] ~= false then  -- a gone checkpoint does not count
          found = found + 1
          if limit > 0 and found >= limit then break end
        end
      end
    end
    if #ids < batch then break end
    upper = '(' .. ids[#ids]
  end
end
if mode == 'ids' then return cmsgpack.pack(out) end
return cmsgpack.pack(finish_entries(B, out))
""",
)

TOUCH = LuaScript(
    "touch",
    _COMMON
    + r"""
touch(ARGV[1], tonumber(ARGV[2]))
return 1
""",
)

DELETE_THREAD = LuaScript(
    "delete_thread",
    _COMMON
    + r"""
local B = ARGV[1]
local nsk = k_ns(B)
local n = 0
for _, ns in ipairs(redis.call('SMEMBERS', nsk)) do
  local ne = esc(ns)
  local reg = k_reg(B, ne)
  for _, id in ipairs(redis.call('ZRANGE', reg, 0, -1)) do
    redis.call('DEL', k_cp(B, ne, id), k_w(B, ne, id))
    n = n + 1
  end
  redis.call('DEL', reg, k_blobs(B, ne))
end
for _, wk in ipairs(redis.call('SMEMBERS', k_wk(B))) do redis.call('DEL', wk) end
redis.call('DEL', nsk, k_wk(B))
return 0
""",
)

RETAIN = LuaScript(
    "retain",
    _COMMON
    + r"""
-- ARGV: handle, ns, keep: retention on write (runs inside APPLY as '__retain__')
retain(ARGV[1], ARGV[2], tonumber(ARGV[3]))
return 1
""",
)

PRUNE = LuaScript(
    "prune",
    _COMMON
    + r"""
-- ARGV: handle, keep (checkpoints kept per namespace, newest first)
-- A kept checkpoint keeps its ancestors back to the nearest one that stores a value
-- for each of its delta channels, so DeltaChannel state can still be rebuilt.
local B, keep_n = ARGV[1], tonumber(ARGV[2])
local nsk = k_ns(B)
for _, ns in ipairs(redis.call('SMEMBERS', nsk)) do prune_ns(B, ns, keep_n) end
return redis.call('SCARD', nsk)
""",
)

DELETE_RUNS = LuaScript(
    "delete_runs",
    _COMMON
    + r"""
-- ARGV: handle, run ids...; returns the number of namespaces left in the thread
local B = ARGV[1]
local runs = {}
for i = 2, #ARGV do runs[ARGV[i]] = true end
local nsk = k_ns(B)
for _, ns in ipairs(redis.call('SMEMBERS', nsk)) do
  local ne = esc(ns)
  local dropped = false
  for _, id in ipairs(redis.call('ZRANGE', k_reg(B, ne), 0, -1)) do
    local run = redis.call('HGET', k_cp(B, ne, id), 'run_id')
    if run and runs[run] then
      drop_checkpoint(B, ne, id)
      dropped = true
    end
  end
  if dropped then settle(B, ns) end  -- most threads hold none of the runs
end
return redis.call('SCARD', nsk)
""",
)

EXPORT = LuaScript(
    "export",
    _COMMON
    + r"""
-- every namespace: {ns, blob hash, {id, checkpoint hash, writes hash}...}
local B = ARGV[1]
local out = {}
for _, ns in ipairs(redis.call('SMEMBERS', k_ns(B))) do
  local ne = esc(ns)
  local entries = {}
  for _, id in ipairs(redis.call('ZRANGE', k_reg(B, ne), 0, -1)) do
    local cp = redis.call('HGETALL', k_cp(B, ne, id))
    if #cp > 0 then
      entries[#entries + 1] = {id, cp, redis.call('HGETALL', k_w(B, ne, id))}
    end
  end
  out[#out + 1] = {ns, redis.call('HGETALL', k_blobs(B, ne)), entries}
end
return out
""",
)

HISTORY = LuaScript(
    "history",
    _COMMON
    + r"""
-- ARGV: handle, ns, checkpoint id ('' for latest), channels...
-- Walks the parent chain once; per ancestor returns {id, writes hash, {ch, value}...,
-- {field, value}... of delta bases} and stops when every channel has met a stored
-- value (its seed) or at the root.
local B, ns, id = ARGV[1], ARGV[2], ARGV[3]
local ne = esc(ns)
local bk = k_blobs(B, ne)
if id == '' then
  local top = redis.call('ZREVRANGEBYLEX', k_reg(B, ne), '+', '-', 'LIMIT', 0, 1)
  if #top == 0 then return {} end
  id = top[1]
end
local remaining, n = {}, 0
for i = 4, #ARGV do
  remaining[esc(ARGV[i]) .. ':'] = ARGV[i]
  n = n + 1
end
local out = {}
local cur = redis.call('HGET', k_cp(B, ne, id), 'parent')
while n > 0 and cur and cur ~= '' do
  local ck = k_cp(B, ne, cur)
  local list = redis.call('HGET', ck, 'blobs')
  if not list then break end
  local seeds, bases = {}, {}
  for _, f in ipairs(split(list)) do
    local head = string.sub(f, 1, string.find(f, ':', 1, true))
    local ch = remaining[head]
    if ch then
      local v = redis.call('HGET', bk, f)
      if v then
        seeds[#seeds + 1] = ch
        seeds[#seeds + 1] = v
        add_bases(bk, v, {}, bases)
        remaining[head] = nil
        n = n - 1
      end
    end
  end
  out[#out + 1] = {cur, redis.call('HGETALL', k_w(B, ne, cur)), seeds, bases}
  cur = redis.call('HGET', ck, 'parent')
end
return cmsgpack.pack(out)  -- one string, parsed in C (see finish_entries)
""",
)

_APPLY_BODY = r"""
-- ARGV: groups of (n, command, n - 1 arguments). Pseudo commands: '__touch__' renews
-- a thread's TTL; '__retain__' (handle, ns, keep) prunes a namespace after a put;
-- '__require__' (key, fields...) names hash fields that must exist,
-- checked before anything is written: where one is missing nothing is applied and
-- the answer is {missing fields}. One script call = one atomic write on one slot.
local groups = {}
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  groups[#groups + 1] = {i + 1, i + n}
  i = i + n + 1
end
local missing = {}
for _, g in ipairs(groups) do
  if ARGV[g[1]] == '__require__' then
    local key = ARGV[g[1] + 1]
    for j = g[1] + 2, g[2] do
      if redis.call('HEXISTS', key, ARGV[j]) == 0 then missing[#missing + 1] = ARGV[j] end
    end
  end
end
if #missing > 0 then return cmsgpack.pack({missing}) end
local out = {}
for _, g in ipairs(groups) do
  local name = ARGV[g[1]]
  if name == '__require__' then
    out[#out + 1] = 1
  elseif name == '__touch__' then
    touch(ARGV[g[1] + 1], tonumber(ARGV[g[1] + 2]))
    out[#out + 1] = 1
  elseif name == '__retain__' then
    retain(ARGV[g[1] + 1], ARGV[g[1] + 2], tonumber(ARGV[g[1] + 3]))
    out[#out + 1] = 1
  else
    out[#out + 1] = redis.call(unpack(ARGV, g[1], g[2]))
  end
end
return cmsgpack.pack(out)  -- one string: parsed in C by the client
"""

APPLY = LuaScript("apply", _COMMON + _APPLY_BODY)
APPLY_PLAIN = LuaScript("apply_plain", _APPLY_BODY)
"""APPLY for writes that run no script inline ('__touch__', '__retain__'): without
the helpers those need, whose definitions cost each call about 9 us of server CPU
(their branches are never reached here)."""
