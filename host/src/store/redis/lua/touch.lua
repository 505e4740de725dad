-- KEYS: g, b, and on one node the schedule key (cron) when the status is unfinished. ARGV:
-- status, interval, next_cron_time, now, ttl, owner, gid.
-- Answer: {'ok'}; {'notfound'} unless the record has that status and owner.
-- With the schedule key, the gid's schedule entry moves with the record (one round trip; on a
-- cluster that key is on another slot, and store.rs moves the entry in a call of its own).
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
if (redis.call('HGET', KEYS[1], 'owner') or '') ~= ARGV[6] then return {'notfound'} end
redis.call('HSET', KEYS[1], 'next_cron_interval', ARGV[2], 'next_cron_time', ARGV[3],
  'update_time', ARGV[4])
expire(ARGV[5], KEYS[1], KEYS[2])
if KEYS[3] then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[7]) end
return {'ok'}
