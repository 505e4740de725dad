-- KEYS: g, b, m. ARGV: due_before, lease_until, owner, now, ttl, marker ttl (ms).
-- Answer: `claimed` + the record's fields, `later` + its next_cron_time, `missing` (first time
-- without a record) or `gone` (missing twice, or finished: the index entry is stale).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'gone'} end
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[6])
  return {'missing'}
end
if not unfinished(st) then return {'gone'} end
local next = redis.call('HGET', KEYS[1], 'next_cron_time') or '0'
if tonumber(next) >= tonumber(ARGV[1]) then return {'later', next} end
redis.call('HSET', KEYS[1], 'next_cron_time', ARGV[2], 'owner', ARGV[3], 'update_time', ARGV[4])
expire(ARGV[5], KEYS[1], KEYS[2])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'claimed')
return out
