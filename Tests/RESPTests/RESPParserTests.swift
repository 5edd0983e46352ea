// RESP2 codec: every type round-trips, replies split at every byte boundary parse the same
// as whole, malformed input fails with its kind and offset (and nothing is consumed), the
// limits are checked before allocation, and commands encode as arrays of bulk strings.
import RESP
import SpoolTestSupport
import XCTest

final class RESPParserTests: XCTestCase {
    let sample: [RESPValue] = [
        .simple("OK"), .error("NOGROUP No such key 'q' or consumer group 'g'"), .integer(-42), .integer(Int64.max),
        .bulk(Array("hello\r\nworld".utf8)), .bulk([]), .null,
        .array([]), .array([.bulk(Array("1700000000000-0".utf8)), .array([.bulk(Array("b".utf8)), .bulk(Array("job".utf8))])]),
        .array([.null, .integer(1), .array([.array([.simple("deep")])])]),
    ]

    func testEveryTypeRoundTrips() throws {
        var wire: [UInt8] = []
        for v in sample { v.encode(into: &wire) }
        let (values, rest) = try RESPParser.parseAll(wire)
        XCTAssertEqual(values, sample)
        XCTAssertEqual(rest, 0)
    }

    func testSplitAtEveryByteParsesTheSame() throws {
        var wire: [UInt8] = []
        for v in sample { v.encode(into: &wire) }
        for cut in 0...wire.count {
            var p = RESPParser()
            var got: [RESPValue] = []
            p.append(wire[..<cut])
            while let v = try p.next() { got.append(v) }
            p.append(wire[cut...])
            while let v = try p.next() { got.append(v) }
            XCTAssertEqual(got, sample, "cut at \(cut)")
        }
        // One byte at a time.
        var p = RESPParser()
        var got: [RESPValue] = []
        for b in wire {
            p.append([b])
            while let v = try p.next() { got.append(v) }
        }
        XCTAssertEqual(got, sample)
    }

    func testNullArrayAndBulk() throws {
        XCTAssertEqual(try RESPParser.parseAll(Array("*-1\r\n$-1\r\n".utf8)).values, [.null, .null])
    }

    func malformed(_ text: String, _ kind: RESPError.Kind, at offset: Int, limits: RESPLimits = RESPLimits(), file: StaticString = #filePath, line: UInt = #line) {
        var p = RESPParser(limits: limits)
        p.append(Array(text.utf8))
        do {
            let v = try p.next()
            XCTFail("accepted \(text.debugDescription) as \(String(describing: v))", file: file, line: line)
        } catch {
            XCTAssertEqual(error.kind, kind, text.debugDescription, file: file, line: line)
            XCTAssertEqual(error.offset, offset, text.debugDescription, file: file, line: line)
        }
    }

    func testMalformedRepliesAreRefused() {
        malformed("!oops\r\n", .unknownType, at: 0)
        malformed("%2\r\n", .unknownType, at: 0)            // RESP3 map: never asked for
        malformed("+OK\n", .badLineEnding, at: 3)
        malformed("+O\rK\r\n", .badLineEnding, at: 2)
        malformed(":12a\r\n", .badInteger, at: 3)
        malformed(":\r\n", .badInteger, at: 1)
        malformed(":+1\r\n", .badInteger, at: 1)
        malformed(":-\r\n", .badInteger, at: 1)
        malformed(": 1\r\n", .badInteger, at: 1)
        malformed(":99999999999999999999\r\n", .badInteger, at: 1)
        malformed("$-2\r\n", .badLength, at: 1)
        malformed("*-5\r\n", .badLength, at: 1)
        malformed("$3\r\nabcd\r\n", .badLineEnding, at: 7)
        malformed("*2\r\n:1\r\n!\r\n", .unknownType, at: 8)
        var small = RESPLimits()
        small.maxBulkBytes = 4
        malformed("$5\r\n", .bulkTooLarge, at: 1, limits: small)
        small.maxArrayCount = 2
        malformed("*3\r\n", .arrayTooLarge, at: 1, limits: small)
        small.maxDepth = 2
        malformed("*1\r\n*1\r\n*1\r\n:1\r\n", .tooDeep, at: 8, limits: small)
        small.maxLineBytes = 8
        malformed("+" + String(repeating: "a", count: 20), .lineTooLong, at: 1, limits: small)
    }

    func testIncompleteConsumesNothing() throws {
        var p = RESPParser()
        p.append(Array("*2\r\n$3\r\nfoo\r\n$3\r\nba".utf8))
        XCTAssertNil(try p.next())
        XCTAssertEqual(p.buffered, 19)
        p.append(Array("r\r\n+OK\r\n".utf8))
        XCTAssertEqual(try p.next(), .array([.bulk(Array("foo".utf8)), .bulk(Array("bar".utf8))]))
        XCTAssertEqual(try p.next(), .simple("OK"))
        XCTAssertNil(try p.next())
        XCTAssertEqual(p.buffered, 0)
    }

    func testHugeDeclaredLengthsAllocateNothingUpFront() throws {
        // A declared count far past what arrived must not reserve that much.
        var p = RESPParser()
        p.append(Array("*1000000\r\n:1\r\n".utf8))
        XCTAssertNil(try p.next())
        p = RESPParser()
        p.append(Array("$67108864\r\nabc".utf8))
        XCTAssertNil(try p.next())
    }

    func testCommandsAreArraysOfBulkStrings() throws {
        var c = RESPCommand(["XADD", "q", "*", "b", "héllo\r\n"])
        c.append(["PING"])
        XCTAssertEqual(c.count, 2)
        XCTAssertEqual(String(decoding: c.bytes, as: UTF8.self),
                       "*5\r\n$4\r\nXADD\r\n$1\r\nq\r\n$1\r\n*\r\n$1\r\nb\r\n$8\r\nhéllo\r\n\r\n*1\r\n$4\r\nPING\r\n")
        // A command parses back as the array it is.
        let (values, _) = try RESPParser.parseAll(c.bytes)
        XCTAssertEqual(values[1], .array([.bulk(Array("PING".utf8))]))
    }

    /// Random values, random splits, random byte flips: whole and split parses agree, and
    /// a flipped stream either parses to values that re-encode consistently or fails cleanly.
    func testRandomValuesSplitsAndCorruption() throws {
        var rng = SplitMix(seed: 0x5eed_2e5b)
        for round in 0..<300 {
            var values: [RESPValue] = []
            for _ in 0..<Int.random(in: 1...6, using: &rng) { values.append(randomValue(&rng, depth: 0)) }
            var wire: [UInt8] = []
            for v in values { v.encode(into: &wire) }
            XCTAssertEqual(try RESPParser.parseAll(wire).values, values, "round \(round)")
            var p = RESPParser()
            var got: [RESPValue] = []
            var i = 0
            while i < wire.count {
                let n = Int.random(in: 1...max(1, wire.count / 3), using: &rng)
                p.append(wire[i..<min(wire.count, i + n)])
                i += n
                while let v = try p.next() { got.append(v) }
            }
            XCTAssertEqual(got, values, "round \(round), split")
            var bad = wire
            bad[Int.random(in: 0..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            if let parsed = try? RESPParser.parseAll(bad).values {
                for v in parsed { XCTAssertEqual(try RESPParser.parseAll(v.encoded).values, [v]) }
            }
        }
    }

    func randomValue(_ rng: inout SplitMix, depth: Int) -> RESPValue {
        switch Int.random(in: 0..<(depth < 3 ? 6 : 5), using: &rng) {
        case 0: return .simple(String(repeating: "s", count: Int.random(in: 0...8, using: &rng)))
        case 1: return .error("ERR " + String(repeating: "e", count: Int.random(in: 0...8, using: &rng)))
        case 2: return .integer(Int64.random(in: Int64.min...Int64.max, using: &rng))
        case 3: return .bulk((0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
        case 4: return .null
        default: return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1) })
        }
    }
}
