import JSON
import XCTest

final class ReaderTests: XCTestCase {
    func testReadsFieldsOnDemand() throws {
        let doc = try JSONDocument(parsing: #"{"id":"job_1","n":-42,"big":18446744073709551615,"x":0.1,"ok":true,"none":null,"arr":[1,[2,{"a":3}],"s\u00e9"],"esc":"a\"b\\c\n\u00e9\ud83d\ude00"}"#)
        let r = doc.root
        XCTAssertEqual(r.kind, .object)
        XCTAssertEqual(r.count, 8)
        XCTAssertEqual(try r["id"]?.string(), "job_1")
        XCTAssertEqual(try r["n"]?.int64(), -42)
        XCTAssertEqual(try r["big"]?.uint64(), UInt64.max)
        XCTAssertThrowsError(try r["big"]?.int64())
        XCTAssertEqual(try r["x"]?.double(), 0.1)
        XCTAssertEqual(try r["ok"]?.bool(), true)
        XCTAssertEqual(r["none"]?.isNull, true)
        XCTAssertNil(r["missing"])
        XCTAssertEqual(r["arr"]?.count, 3)
        XCTAssertEqual(try r["arr"]?[1]?[1]?["a"]?.int(), 3)
        XCTAssertEqual(try r["arr"]?[2]?.string(), "sé")
        XCTAssertEqual(try r["esc"]?.string(), "a\"b\\c\né😀")
        XCTAssertEqual(r["arr"]?[1]?[1]?["a"]?.pointer, "/arr/1/1/a")
        XCTAssertEqual(r["arr"]?.rawText, #"[1,[2,{"a":3}],"s\u00e9"]"#)
    }
}
