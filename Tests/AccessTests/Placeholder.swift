import XCTest
@testable import Access
final class PlaceholderTests: XCTestCase { func testModuleLinks() { XCTAssertNotNil(AccessModule.self) } }
