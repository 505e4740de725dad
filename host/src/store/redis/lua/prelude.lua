-- Helpers every script but claim_bucket, release, settle and the kv scripts starts with
-- (scripts.rs prepends this file). No KEYS or ARGV of its own; answers nothing.
local function expire(ttl, ...)
  for _, key in ipairs({...}) do
    if tonumber(ttl) > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
  end
end
-- Appends its arguments to the list `t`.
local function push(t, ...)
  for _, v in ipairs({...}) do t[#t + 1] = v end
end
-- Sets the field/value pairs listed in `set` on `key`: one HSET per 1000 entries (each call is a
-- command Redis runs and accounts for; 1000 keeps `unpack` well inside Lua's stack of 8000).
local function hset_all(key, set)
  for i = 1, #set, 1000 do
    redis.call('HSET', key, unpack(set, i, math.min(i + 999, #set)))
  end
end
local function unfinished(st)
  return st == 'prepared' or st == 'submitted' or st == 'aborting'
end
-- Branch records come as 9 ARGV entries each from `base`: index field, url, bin_data, branch_id,
-- op, status, finish_time ('' = none), create_time, update_time.
local function duplicate_branch(key, base, nb)
  local seen = {}
  for i = 0, nb - 1 do
    local ix = ARGV[base + i * 9]
    if seen[ix] or redis.call('HEXISTS', key, ix) == 1 then return true end
    seen[ix] = true
  end
  return false
end
-- Branch outcomes come as 2 ARGV entries each from `base`: index field, status. Sets them all,
-- or none when one of the records does not exist (then returns false).
local function set_outcomes(key, base, n, now)
  local ps = {}
  for i = 0, n - 1 do
    ps[i] = redis.call('HGET', key, ARGV[base + i * 2])
    if not ps[i] then return false end
  end
  local set = {}
  for i = 0, n - 1 do
    local p = ps[i]
    push(set, p .. ':st', ARGV[base + i * 2 + 1], p .. ':ft', now, p .. ':ut', now)
  end
  hset_all(key, set)
  return true
end
local function add_branches(key, first, base, nb)
  if nb == 0 then return end
  local set = {}
  for i = 0, nb - 1 do
    local a = base + i * 9
    local p = tostring(first + i)
    push(set, ARGV[a], p, p .. ':url', ARGV[a + 1], p .. ':bin', ARGV[a + 2],
      p .. ':bid', ARGV[a + 3], p .. ':op', ARGV[a + 4], p .. ':st', ARGV[a + 5],
      p .. ':ct', ARGV[a + 7], p .. ':ut', ARGV[a + 8])
    if ARGV[a + 6] ~= '' then push(set, p .. ':ft', ARGV[a + 6]) end
  end
  push(set, 'n', tostring(first + nb))
  hset_all(key, set)
end
