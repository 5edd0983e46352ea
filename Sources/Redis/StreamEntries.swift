// Redis.StreamEntries: reading the replies of the stream commands (XRANGE, XREVRANGE, and
// each stream of an XREAD or XREADGROUP reply): [[id, [field, value, ...]], ...].
import RESP

extension RESPValue {
    /// The entries of an XRANGE-shaped reply, in order; malformed entries are skipped.
    public var streamEntries: [(id: String, fields: [String: String])] {
        (array ?? []).compactMap { e in
            guard let kv = e.array, kv.count == 2, let id = kv[0].text, let flat = kv[1].array else { return nil }
            var map: [String: String] = [:]
            var i = 0
            while i + 1 < flat.count {
                if let k = flat[i].text { map[k] = flat[i + 1].text }
                i += 2
            }
            return (id, map)
        }
    }
}
