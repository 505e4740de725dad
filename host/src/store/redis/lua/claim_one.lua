-- KEYS: g, b. ARGV: owner, lease_until, now, ttl.
-- Answer: `claimed` + the record's fields while it is unfinished and no other pass holds it;
-- else `held`.
local st = redis.call('HGET', KEYS[1], 'status')
if not st or not unfinished(st) then return {'held'} end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
local next = tonumber(redis.call('HGET', KEYS[1], 'next_cron_time') or '0')
if owner ~= '' and owner ~= ARGV[1] and next >= tonumber(ARGV[3]) then return {'held'} end
redis.call('HSET', KEYS[1], 'next_cron_time', ARGV[2], 'owner', ARGV[1], 'update_time', ARGV[3])
expire(ARGV[4], KEYS[1], KEYS[2])
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'claimed')
return out
