-- KEYS: g, b, and on one node the schedule (cron) and listing (list) keys of the gid's bucket.
-- ARGV: ttl, next_cron_time, gid, listing entry, field count F, F field/value entries, branch
-- count, branches.
-- Answer: {'ok'}; {'conflict', create_time of the existing record} when the record exists;
-- {'conflict', ''} when one of the branch records is named twice or exists.
-- With the index keys, the index entries go with the record (one round trip, nothing to repair;
-- on a cluster they are on other slots, and store.rs writes them first, in calls of their own).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'conflict', redis.call('HGET', KEYS[1], 'create_time') or ''}
end
local nf = tonumber(ARGV[5])
local nb = tonumber(ARGV[6 + nf])
if duplicate_branch(KEYS[2], 7 + nf, nb) then return {'conflict', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + nf))
add_branches(KEYS[2], 0, 7 + nf, nb)
expire(ARGV[1], KEYS[1], KEYS[2])
if KEYS[3] then
  -- LT, NX: as store.rs's index writes on a cluster.
  redis.call('ZADD', KEYS[3], 'LT', ARGV[2], ARGV[3])
  redis.call('ZADD', KEYS[4], 'NX', 0, ARGV[4])
end
return {'ok'}
