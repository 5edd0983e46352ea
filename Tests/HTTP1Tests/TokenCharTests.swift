// isTChar's constant masks against RFC 9110's definition of tchar, for every byte value.
@testable import HTTP1
import XCTest

final class TokenCharTests: XCTestCase {
    func testTheMasksAreExactlyTheGrammarsTokenCharacters() {
        let specials = Set("!#$%&'*+-.^_`|~".utf8)
        for i in 0...255 {
            let c = UInt8(i)
            let alpha = (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c)
            let digit = (0x30...0x39).contains(c)
            XCTAssertEqual(isTChar(c), alpha || digit || specials.contains(c), "byte \(i)")
        }
    }

    func testAFieldProblemNamesTheNameOrTheValue() {
        XCTAssertNil(FieldSyntax.problem(name: "X-Ok", value: "a\tb c~"))
        XCTAssertNotNil(FieldSyntax.problem(name: "", value: "v"))
        XCTAssertNotNil(FieldSyntax.problem(name: "Bad Name", value: "v"))
        XCTAssertNotNil(FieldSyntax.problem(name: "X", value: "a\r\nInjected: 1"))
        XCTAssertNotNil(FieldSyntax.problem(name: "X", value: "nul\u{0}"))
        XCTAssertNotNil(FieldSyntax.problem(name: "X", value: "del\u{7F}"))
        XCTAssertNil(FieldSyntax.problem(name: "X", value: "caf\u{E9}"))
    }
}
