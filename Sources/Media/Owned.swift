// Media.Owned: Swift owners for libav objects. Each class holds one libav pointer and
// frees it in deinit, exactly once; nothing else in the module frees these pointers.
// `LibAVObjects.live` counts owners alive, so tests can prove that a cancelled or failed
// job released everything it allocated.
//
// These owners are not Sendable: a transcode creates and drops them on its own thread.
internal import CLibAV
import Synchronization
import Threads
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
@safe final class Frame {
    let ptr: UnsafeMutablePointer<AVFrame>

    init() throws(MediaError) {
        guard let p = unsafe av_frame_alloc() else { throw outOfMemory("allocating a frame") }
        unsafe ptr = p
        LibAVObjects.retain()
    }

    deinit {
        var p: UnsafeMutablePointer<AVFrame>? = unsafe ptr
        unsafe av_frame_free(&p)
        LibAVObjects.release()
    }

    func unref() { unsafe av_frame_unref(ptr) }

    var width: Int32 { unsafe ptr.pointee.width }
    var height: Int32 { unsafe ptr.pointee.height }
    var format: Int32 { unsafe ptr.pointee.format }
    var pts: Int64 {
        get { unsafe ptr.pointee.pts }
        set { unsafe ptr.pointee.pts = newValue }
    }
    func data(_ plane: Int32) -> UnsafeMutablePointer<UInt8>? { unsafe clibav_frame_data(ptr, plane) }
    func linesize(_ plane: Int32) -> Int { unsafe Int(clibav_frame_linesize(ptr, plane)) }
}

/// An AVPacket.
@safe final class Packet {
    let ptr: UnsafeMutablePointer<AVPacket>

    init() throws(MediaError) {
        guard let p = unsafe av_packet_alloc() else { throw outOfMemory("allocating a packet") }
        unsafe ptr = p
        LibAVObjects.retain()
    }

    deinit {
        var p: UnsafeMutablePointer<AVPacket>? = unsafe ptr
        unsafe av_packet_free(&p)
        LibAVObjects.release()
    }

    func unref() { unsafe av_packet_unref(ptr) }
}

/// An AVDictionary of options handed to libav; whatever libav did not consume is left
/// in it and freed here.
@safe final class Options {
    var ptr: OpaquePointer?

    init(_ pairs: [(String, String)] = []) {
        for (k, v) in pairs { set(k, v) }
    }

    func set(_ key: String, _ value: String) { unsafe av_dict_set(&ptr, key, value, 0) }

    /// Keys libav left unused (for logging misspelt options).
    var remainingKeys: [String] {
        var keys: [String] = []
        var e: UnsafeMutablePointer<AVDictionaryEntry>? = nil
        while true {
            unsafe e = av_dict_get(ptr, "", e, AV_DICT_IGNORE_SUFFIX)
            guard let entry = unsafe e else { break }
            unsafe keys.append(String(cString: entry.pointee.key))
        }
        return keys
    }

    deinit { unsafe av_dict_free(&ptr) }
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
        unsafe AVIOInterruptCB(
            callback: { opaque in
                guard let opaque = unsafe opaque else { return 0 }
                let state = unsafe Unmanaged<InterruptState>.fromOpaque(opaque).takeUnretainedValue()
                return state.shouldInterrupt ? 1 : 0
            },
            opaque: unsafe Unmanaged.passUnretained(self).toOpaque())
    }
}

/// Threads' system clock (the one CLOCK_MONOTONIC reading) in unsigned nanoseconds, for
/// the deadlines and progress timing that run on a transcode's own thread.
func monotonicNanos() -> UInt64 {
    UInt64(SystemClock.nanoseconds())
}

extension AVRational {
    var double: Double { den == 0 ? 0 : Double(num) / Double(den) }
    var isValid: Bool { num > 0 && den > 0 }
}

func cString(_ p: UnsafePointer<CChar>?) -> String? { unsafe p.map { unsafe String(cString: $0) } }
