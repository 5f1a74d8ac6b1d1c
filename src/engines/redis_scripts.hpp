// The Lua scripts of the Redis storage (loaded with SCRIPT LOAD on every
// command connection, run with EVALSHA). Each runs atomically in Redis.
//
// History is a LIST of encoded entries (redis_wire.hpp), not a Stream:
// offsets are contiguous and the list always ends at the channel's top
// offset, so the entry for offset N sits at index N - (top - LLEN + 1) and
// a recovery read is one LRANGE by index; LTRIM bounds it to history.size.
// A Stream would need its IDs mapped to offsets and buys nothing here
// (no consumer groups are used).
//
// Times (entry times, idempotency and presence expiry) come from the
// engine's clock in ARGV, never from Redis' clock: every node and the
// tests decide expiry the same way. Keys also get Redis expiries (EXPIRE)
// so idle channels vanish on their own.
#pragma once

namespace duplex::engines::detail::redis_scripts {

// KEYS[1] meta hash {epoch, top}, KEYS[2] history list, KEYS[3] idempotency key
// ARGV[1] epoch to create, [2] now ms, [3] history size, [4] history ttl ms,
// [5] idempotency window ms, [6] meta ttl s, [7] "1": PUBLISH, "s": SPUBLISH
// (sharded, cluster), "0": neither, [8] pub/sub
// channel, [9] publisher, [10] data, [11] "1": has an idempotency key
// Returns {epoch, offset, duplicate (0/1)}.
inline constexpr const char* kPublish = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('HDEL', KEYS[1], 'top')
  redis.call('DEL', KEYS[2])
end
local now = tonumber(ARGV[2])
if ARGV[11] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    local e, o, x = string.match(seen, '^([^:]*):(%d+):(%-?%d+)$')
    if e == epoch and tonumber(x) > now then return {epoch, o, 1} end
  end
end
local offset = string.format('%d', redis.call('HINCRBY', KEYS[1], 'top', 1))
local entry = offset .. ':' .. ARGV[2] .. ':' .. string.format('%d', string.len(ARGV[9])) .. ':' .. ARGV[9] .. ARGV[10]
local size = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local meta_ttl = tonumber(ARGV[6])
if size > 0 then
  redis.call('RPUSH', KEYS[2], entry)
  redis.call('LTRIM', KEYS[2], -size, -1)
  if ttl > 0 then
    local cutoff = now - ttl
    for i = 1, 100 do
      local head = redis.call('LINDEX', KEYS[2], 0)
      if not head then break end
      if tonumber(string.match(head, '^%d+:(%-?%d+):')) >= cutoff then break end
      redis.call('LPOP', KEYS[2])
    end
  end
  local expire_ms = ttl
  if meta_ttl > 0 and (expire_ms == 0 or meta_ttl * 1000 < expire_ms) then expire_ms = meta_ttl * 1000 end
  if expire_ms > 0 then redis.call('PEXPIRE', KEYS[2], expire_ms) else redis.call('PERSIST', KEYS[2]) end
else
  redis.call('DEL', KEYS[2])
end
if meta_ttl > 0 then redis.call('EXPIRE', KEYS[1], meta_ttl) else redis.call('PERSIST', KEYS[1]) end
if ARGV[11] == '1' then
  local window = tonumber(ARGV[5])
  if window > 0 then
    redis.call('SET', KEYS[3], epoch .. ':' .. offset .. ':' .. string.format('%d', now + window), 'PX', window + 1000)
  end
end
if ARGV[7] == '1' then
  redis.call('PUBLISH', ARGV[8], 'p' .. epoch .. ':' .. entry)
elseif ARGV[7] == 's' then
  redis.call('SPUBLISH', ARGV[8], 'p' .. epoch .. ':' .. entry)
end
return {epoch, offset, 0}
)lua";

// KEYS[1] meta hash, KEYS[2] history list
// ARGV[1] epoch to create, [2] now ms, [3] history ttl ms, [4] meta ttl s,
// [5] since epoch, [6] "1": since given, [7] since offset, [8] limit
// Returns {epoch, top, entries}: with since, entries after since.offset in
// offset order (none when the epoch differs or since is ahead of top);
// without, the newest entries, newest first. Expired entries are skipped
// and do not count against the limit.
inline constexpr const char* kHistory = R"lua(
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
  redis.call('DEL', KEYS[2])
  local meta_ttl = tonumber(ARGV[4])
  if meta_ttl > 0 then redis.call('EXPIRE', KEYS[1], meta_ttl) end
end
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local limit = tonumber(ARGV[8])
local ttl = tonumber(ARGV[3])
local cutoff = nil
if ttl > 0 then cutoff = tonumber(ARGV[2]) - ttl end
local function fresh(entry)
  if not cutoff then return true end
  return tonumber(string.match(entry, '^%d+:(%-?%d+):')) >= cutoff
end
local out = {}
local len = redis.call('LLEN', KEYS[2])
if len > top then len = top end
if limit > 0 and len > 0 then
  local first = top - len + 1
  if ARGV[6] == '1' then
    local since = tonumber(ARGV[7])
    if ARGV[5] == epoch and since <= top then
      local index = since + 1 - first
      if index < 0 then index = 0 end
      while index < len and #out < limit do
        local chunk = redis.call('LRANGE', KEYS[2], index, index + limit - 1)
        for _, entry in ipairs(chunk) do
          if #out >= limit then break end
          if fresh(entry) then out[#out + 1] = entry end
        end
        index = index + limit
      end
    end
  else
    local stop = len - 1
    while stop >= 0 and #out < limit do
      local start = stop - limit + 1
      if start < 0 then start = 0 end
      local chunk = redis.call('LRANGE', KEYS[2], start, stop)
      for i = #chunk, 1, -1 do
        if #out >= limit then break end
        if fresh(chunk[i]) then out[#out + 1] = chunk[i] end
      end
      stop = start - 1
    end
  end
end
return {epoch, string.format('%d', top), out}
)lua";

// KEYS[1] presence hash (client id -> client), KEYS[2] expiry zset
// ARGV[1] client id, [2] encoded client, [3] now ms, [4] expires at ms,
// [5] key ttl s, [6] "1"/"s": PUBLISH/SPUBLISH the join when new, [7] pub/sub channel,
// [8] join message. Returns 1 when the entry is new (or had expired).
inline constexpr const char* kPresenceAdd = R"lua(
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local added = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if added == 1 and ARGV[6] == '1' then redis.call('PUBLISH', ARGV[7], ARGV[8]) end
if added == 1 and ARGV[6] == 's' then redis.call('SPUBLISH', ARGV[7], ARGV[8]) end
return added
)lua";

// KEYS[1] presence hash, KEYS[2] expiry zset
// ARGV[1] client id, [2] "1"/"s": PUBLISH/SPUBLISH the leave when removed, [3] pub/sub
// channel, [4] leave message. Returns 1 when an entry was removed.
inline constexpr const char* kPresenceRemove = R"lua(
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 1 and ARGV[2] == '1' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
if removed == 1 and ARGV[2] == 's' then redis.call('SPUBLISH', ARGV[3], ARGV[4]) end
return removed
)lua";

// KEYS[1] hash, KEYS[2] expiry zset; ARGV[1] now ms. Drops the expired
// members, returns HGETALL of the rest. Used for presence and the nodes.
inline constexpr const char* kLiveEntries = R"lua(
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
for _, id in ipairs(expired) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return redis.call('HGETALL', KEYS[1])
)lua";

// KEYS[1] nodes hash, KEYS[2] expiry zset; ARGV[1] name, [2] encoded node,
// [3] expires at ms.
inline constexpr const char* kNodeBeat = R"lua(
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
)lua";

}  // namespace duplex::engines::detail::redis_scripts
