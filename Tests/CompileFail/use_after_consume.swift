// Ownership misuse must not compile. BufferPoolTests.testUseAfterConsumeDoesNotCompile
// compiles this file to SIL (the move checker runs there, after type checking) against
// the built BufferPool module twice: as it is, it must compile (the control, so a broken
// harness cannot pass), and with -D COMPILE_FAIL it must fail with one "used after
// consume" error per function below the #if. Not part of any target.
import BufferPool

/// Takes the buffer, as a send or a read into it does.
func submit(_ buffer: consuming PooledBuffer) -> Int { buffer.count }

func control(_ pool: BufferPool) -> Int {
    guard var buffer = pool.tryAcquire() else { return 0 }
    buffer.count = 0
    return submit(buffer)
}

#if COMPILE_FAIL
func usedAfterPassingIt(_ pool: BufferPool) -> Int {
    guard let buffer = pool.tryAcquire() else { return 0 }
    _ = submit(buffer)
    return buffer.count
}

func usedAfterConsume(_ pool: BufferPool) -> Int {
    guard let buffer = pool.tryAcquire() else { return 0 }
    let moved = consume buffer
    _ = submit(moved)
    return buffer.count
}
#endif
