import XCTest
@testable import Dispatcher
final class CallerTests: XCTestCase {
    func testPrincipalRoundTrip() {
        XCTAssertEqual(Caller(principal: Caller(tenant: "acme", isAdmin: true).principal), Caller(tenant: "acme", isAdmin: true))
        XCTAssertNil(Caller(principal: "acme"))
    }
}
