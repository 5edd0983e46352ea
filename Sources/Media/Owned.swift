// Media.Owned: Swift owners for libav objects. Each class holds one libav pointer and
// frees it in deinit, exactly once; nothing else in the module frees these pointers.
// `LibAVObjects.live` counts owners alive, so tests can prove that a cancelled or failed
// job released everything it allocated.
//
// These owners are not Sendable: a transcode creates and drops them on its own thread.
internal import CLibAV
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum LibAVObjects {
    static let counter = Atomic<Int>(0)
    /// libav objects currently owned by Media (frames, packets, contexts, scalers...).
    public static var live: Int { counter.load(ordering: .acquiring) }
    static func retain() { counter.add(1, ordering: .relaxed) }
    static func release() { counter.subtract(1, ordering: .releasing) }
}

/// An AVFrame.
final class Frame {
    let ptr: UnsafeMutablePointer<AVFrame>

    init() throws(MediaError) {
        guard let p = av_frame_alloc() else { throw outOfMemory("allocating a frame") }
        ptr = p
        LibAVObjects.retain()
    }

    deinit {
        var p: UnsafeMutablePointer<AVFrame>? = ptr
        av_frame_free(&p)
        LibAVObjects.release()
    }

    func unref() { av_frame_unref(ptr) }

    var width: Int32 { ptr.pointee.width }
    var height: Int32 { ptr.pointee.height }
    var format: Int32 { ptr.pointee.format }
    var pts: Int64 {
        get { ptr.pointee.pts }
        set { ptr.pointee.pts = newValue }
    }
    func data(_ plane: Int32) -> UnsafeMutablePointer<UInt8>? { clibav_frame_data(ptr, plane) }
    func linesize(_ plane: Int32) -> Int { Int(clibav_frame_linesize(ptr, plane)) }
}

/// An AVPacket.
final class Packet {
    let ptr: UnsafeMutablePointer<AVPacket>

    init() throws(MediaError) {
        guard let p = av_packet_alloc() else { throw outOfMemory("allocating a packet") }
        ptr = p
        LibAVObjects.retain()
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = ptr
        av_packet_free(&p)
        LibAVObjects.release()
    }

    func unref() { av_packet_unref(ptr) }
}

/// An AVDictionary of options handed to libav; whatever libav did not consume is left
/// in it and freed here.
final class Options {
    var ptr: OpaquePointer?

    init(_ pairs: [(String, String)] = []) {
        for (k, v) in pairs { set(k, v) }
    }

    func set(_ key: String, _ value: String) { av_dict_set(&ptr, key, value, 0) }

    /// Keys libav left unused (for logging misspelt options).
    var remainingKeys: [String] {
        var keys: [String] = []
        var e: UnsafeMutablePointer<AVDictionaryEntry>? = nil
        while true {
            e = av_dict_get(ptr, "", e, AV_DICT_IGNORE_SUFFIX)
            guard let entry = e else { break }
            keys.append(String(cString: entry.pointee.key))
        }
        return keys
    }

    deinit { av_dict_free(&ptr) }
}

/// A one-way flag a caller sets to stop a job; checked every frame and from libav's
/// interrupt callback (so blocking reads stop too).
public final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public func cancel() { flag.store(true, ordering: .releasing) }
    public var isCancelled: Bool { flag.load(ordering: .acquiring) }
}

/// What libav's interrupt callback consults: cancellation and an optional deadline.
/// Held by the object owning the AVFormatContext, so it outlives every callback.
final class InterruptState {
    let cancel: CancellationFlag?
    /// Monotonic nanoseconds after which blocking libav calls are interrupted (0 = none).
    private let deadline = Atomic<UInt64>(0)
    private(set) var deadlineSeconds: Double = 0

    init(cancel: CancellationFlag?) { self.cancel = cancel }

    func arm(seconds: Double) {
        deadlineSeconds = seconds
        deadline.store(monotonicNanos() &+ UInt64(seconds * 1e9), ordering: .relaxed)
    }
    func disarm() { deadline.store(0, ordering: .relaxed) }

    var expired: Bool {
        let d = deadline.load(ordering: .relaxed)
        return d != 0 && monotonicNanos() > d
    }
    var shouldInterrupt: Bool { (cancel?.isCancelled ?? false) || expired }

    /// The AVIOInterruptCB pointing at this object (unretained: the owner keeps it alive).
    var callback: AVIOInterruptCB {
        AVIOInterruptCB(
            callback: { opaque in
                guard let opaque else { return 0 }
                let state = Unmanaged<InterruptState>.fromOpaque(opaque).takeUnretainedValue()
                return state.shouldInterrupt ? 1 : 0
            },
            opaque: Unmanaged.passUnretained(self).toOpaque())
    }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

extension AVRational {
    var double: Double { den == 0 ? 0 : Double(num) / Double(den) }
    var isValid: Bool { num > 0 && den > 0 }
}

func cString(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }
