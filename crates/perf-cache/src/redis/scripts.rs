//! Lua scripts the Redis tier runs server-side, each touching only the keys it declares.

/// Attaches a member to one tag index (a sorted set scored by the member's expiry time in
/// milliseconds of the server clock, `+inf` for no expiry), drops members that have expired,
/// and makes the index itself live exactly as long as its longest-lived member.
///
/// `KEYS[1]` = tag index, `ARGV[1]` = member key, `ARGV[2]` = time to live in ms (0: none).
/// Runs on the server's clock (`TIME`), so clients with skewed clocks agree.
pub(crate) const TAG_ATTACH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
else
  redis.call('ZADD', KEYS[1], 'inf', ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] == nil or last[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])) + 1000)
end
return 1
";

/// Releases a lock only when it still holds our token (compare-and-delete).
///
/// `KEYS[1]` = lock key, `ARGV[1]` = token. Returns 1 when released, 0 when someone else holds
/// it (ours expired).
pub(crate) const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";
