// WebTests' shared client helper: a fresh HTTPClient on a loop for one body, its
// connections closed afterwards whether the body threw or not.
import Ring
import Web

extension EventLoop {
    func withHTTPClient<T: Sendable>(_ configuration: HTTPClientConfiguration,
                                     _ body: @escaping @Sendable (HTTPClient) async throws -> T) async throws -> T {
        try await run {
            let c = HTTPClient(configuration: configuration)
            do {
                let r = try await body(c)
                await c.shutdown()
                return r
            } catch {
                await c.shutdown()
                throw error
            }
        }
    }
}
