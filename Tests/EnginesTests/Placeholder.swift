import XCTest
@testable import Engines
final class PlaceholderTests: XCTestCase { func testModuleLinks() { XCTAssertNotNil(EnginesModule.self) } }
