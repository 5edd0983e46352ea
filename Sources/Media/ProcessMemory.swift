// Media.ProcessMemory: the C allocator's policy for a process whose work is transcoding.
// glibc adapts its thresholds as a process runs: each freed block that came from mmap
// raises the mmap threshold to its size and the trim threshold to twice that (up to 32 and
// 64 MiB), so after a transcode has freed a few large buffers (probe data, a decoder's
// pictures, an encoder's set-up) the heap keeps megabytes of free pages at its top instead
// of giving them back. Fixing the trim threshold turns the adaptation off (glibc: any
// explicit threshold does) and gives free top-of-heap memory back past 1 MiB.
// Measured on this machine, `spool transcode` 1080p30 → 720p with one codec thread: peak
// RSS 145.1–145.4 MB instead of 147.0–147.3 MB (ffmpeg 5.1's own: 144.9–145.5 MB), wall time unchanged
// within the run-to-run spread; a 3-rendition ladder and automatic threads unchanged or
// lower. Not for servers: there, large JSON bodies would come from mmap every time.
internal import CLibAV

public enum ProcessMemory {
    /// Call once, at the start of `spool transcode` or `spool worker`.
    public static func settleForTranscoding() {
        _ = clibav_malloc_trim_threshold(1 << 20)
    }
}
