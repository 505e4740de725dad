-- KEYS: g, b, and on one node the schedule key (cron) when `to` is final. ARGV: from, to, now,
-- ttl, gid, outcome count N, N outcomes, then field/value entries to set.
-- Answer: {'ok'}; {'notfound'} unless the status is `from` and every branch record exists.
-- With the schedule key, the gid's schedule entry goes with the change (one round trip; on a
-- cluster that key is on another slot, and store.rs removes the entry in a call of its own).
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
local no = tonumber(ARGV[6])
if not set_outcomes(KEYS[2], 7, no, ARGV[3]) then return {'notfound'} end
local set = {'status', ARGV[2], 'update_time', ARGV[3]}
if ARGV[2] == 'succeed' then push(set, 'finish_time', ARGV[3]) end
if ARGV[2] == 'failed' then push(set, 'rollback_time', ARGV[3]) end
for i = 7 + no * 2, #ARGV do set[#set + 1] = ARGV[i] end
hset_all(KEYS[1], set)
expire(ARGV[4], KEYS[1], KEYS[2])
if KEYS[3] then redis.call('ZREM', KEYS[3], ARGV[5]) end
return {'ok'}
