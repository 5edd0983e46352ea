// LoopBound: how a loop-confined value (a connection, a listener, a request body, a
// client) crosses a `@Sendable` boundary to a task or closure that runs on the same loop.
// The check is real, not a comment: every access asserts it is on the loop's thread, in
// debug and release builds alike (swift-nio's loop-bound box has the same idea).

/// A value that belongs to one event loop, carried through `@Sendable` closures and
/// across tasks. Create it on the loop; read `value` only on the loop's thread: anywhere
/// else it traps (debug and release builds).
///
/// - warning: The wrapper checks accesses, not lifetimes: if the last copy of a
///   `LoopBound` is dropped on another thread, a class value's `deinit` runs there. Keep
///   the values whose `deinit` touches loop state from outliving their work on the loop.
public struct LoopBound<Value>: @unchecked Sendable {
    // @unchecked Sendable is sound: `stored` is reachable only through `value`, which
    // proves on every access that the caller runs on `loop`'s thread, so the value is
    // never touched by two threads.
    public let loop: EventLoop
    private let stored: Value

    /// Binds `value` to `loop`; traps unless called on that loop's thread.
    public init(_ value: Value, loop: EventLoop) {
        precondition(loop.inLoop, "LoopBound created off event loop \(loop.id)'s thread")
        self.loop = loop
        self.stored = value
    }

    /// The value; traps unless called on the loop's thread.
    public var value: Value {
        precondition(loop.inLoop, "LoopBound value used off event loop \(loop.id)'s thread")
        return stored
    }
}
