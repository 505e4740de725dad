-- KEYS: g, b. ARGV: status, interval, next_cron_time, now, ttl, owner.
-- Answer: {'ok'}; {'notfound'} unless the record has that status and owner.
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
if (redis.call('HGET', KEYS[1], 'owner') or '') ~= ARGV[6] then return {'notfound'} end
redis.call('HSET', KEYS[1], 'next_cron_interval', ARGV[2], 'next_cron_time', ARGV[3],
  'update_time', ARGV[4])
expire(ARGV[5], KEYS[1], KEYS[2])
return {'ok'}
