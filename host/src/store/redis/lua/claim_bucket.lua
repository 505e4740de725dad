-- KEYS: cron bucket. ARGV: due_before, lease_until, count.
-- Answer: the `count` lowest-scored due gids, leased (their scores moved to lease_until).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, gid in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], gid) end
return due
