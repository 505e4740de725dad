-- KEYS: g, b. ARGV: now, ttl, after ('' = any status; else only unfinished records whose
-- next_cron_time is later than it).
-- Answer: `ok` (unfinished), `finished`, `held` (a pass holds it: its lease stands) or
-- `notfound`.
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'notfound'} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local lease = tonumber(redis.call('HGET', KEYS[1], 'next_cron_time') or '0')
if unfinished(st) and owner ~= '' and lease >= tonumber(ARGV[1]) then return {'held'} end
if ARGV[3] ~= '' then
  local next = redis.call('HGET', KEYS[1], 'next_cron_time') or '0'
  if not unfinished(st) or tonumber(next) <= tonumber(ARGV[3]) then return {'notfound'} end
end
redis.call('HSET', KEYS[1], 'next_cron_time', ARGV[1], 'update_time', ARGV[1])
if not unfinished(st) then return {'finished'} end
expire(ARGV[2], KEYS[1], KEYS[2])
return {'ok'}
