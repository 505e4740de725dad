-- KEYS: cron bucket. ARGV: gid, lease_until, new score ('' = remove). Applies only while the
-- entry still has the lease this claim gave it, so a newer write to the entry wins.
-- Answer: 1 when applied, else 0.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1])
else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
