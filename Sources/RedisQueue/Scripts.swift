// RedisQueue's Lua scripts: each runs atomically in Redis, so a check and the change it
// guards (the receipt still current, then XACK) cannot be split by another consumer.
import Redis

extension RedisStreamsQueue {
    /// KEYS: stream, dead letters. ARGV: group, consumer, min idle ms, count, max
    /// deliveries, dead-letter cap. Returns {id, body, prior deliveries, pending count}
    /// per claimed entry; what was delivered max times already goes to the dead letters.
    static let reclaimScript = RedisScript("""
    local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
    local out = {}
    local maxd = tonumber(ARGV[5])
    for _, e in ipairs(claimed[2]) do
      if e and e[2] then
        local id, f = e[1], e[2]
        local body, prior = '', 0
        for i = 1, #f, 2 do
          if f[i] == 'b' then body = f[i + 1] elseif f[i] == 'd' then prior = tonumber(f[i + 1]) or 0 end
        end
        local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
        local n = p[1][4]
        if prior + n - 1 >= maxd then
          local total = prior + n - 1
          redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'b', body,
                     'r', 'delivered ' .. total .. ' times without an ack', 'id', id, 'd', total,
                     'p', string.match(id, '^(%d+)'))
          redis.call('XACK', KEYS[1], ARGV[1], id)
          redis.call('XDEL', KEYS[1], id)
        else
          table.insert(out, {id, body, prior, n})
        end
      end
    end
    return out
    """)

    /// KEYS: stream, dead letters. ARGV: group, id, receipt, mode (ack, requeue, dead,
    /// extend), reason, dead-letter cap. Returns 1, or 0 when the receipt is stale (the
    /// entry was delivered again, or is gone).
    static let settleScript = RedisScript("""
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
    if #p == 0 or tostring(p[1][4]) ~= ARGV[3] then return 0 end
    if ARGV[4] == 'extend' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, ARGV[2], 'JUSTID')
      return 1
    end
    if ARGV[4] ~= 'ack' then
      local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
      local body, prior = '', 0
      if #e > 0 then
        local f = e[1][2]
        for i = 1, #f, 2 do
          if f[i] == 'b' then body = f[i + 1] elseif f[i] == 'd' then prior = tonumber(f[i + 1]) or 0 end
        end
      end
      local total = prior + p[1][4]
      if ARGV[4] == 'requeue' then
        redis.call('XADD', KEYS[1], '*', 'b', body, 'd', total)
      else
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'b', body, 'r', ARGV[5],
                   'id', ARGV[2], 'd', total, 'p', string.match(ARGV[2], '^(%d+)'))
      end
    end
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[1], ARGV[2])
    return 1
    """)

    /// KEYS: stream. ARGV: group, min idle ms. Removes the group's consumers that hold
    /// nothing and were idle at least that long (dispatchers that stopped), in one step, so
    /// a consumer that took a message meanwhile is never removed with it. Returns their names.
    static let pruneScript = RedisScript("""
    local removed = {}
    local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
    if not ok then return removed end
    local minIdle = tonumber(ARGV[2])
    for _, c in ipairs(consumers) do
      local info = {}
      for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
      if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= minIdle then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
        table.insert(removed, info['name'])
      end
    end
    return removed
    """)
}
