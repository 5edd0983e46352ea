// TranscodeAPI.Requests: what one job asks of a transcoder: a single output (file or
// stream) from a preset, or a decode-once HLS ladder into a new directory.
import SpoolModel

public struct TranscodeRequest: Sendable {
    /// The input file, as the bytes the kernel sees (the stream's name in pipe mode).
    public var inputPath: MediaPath
    /// The output file (the stream's name in pipe mode). Written under a temporary name
    /// in the same directory and renamed onto this one on success only.
    public var outputPath: MediaPath
    /// Replace what exists at `outputPath` (a file, or a symlink: the link itself, never
    /// its target). Without it an existing output is refused with `output_exists`.
    public var overwrite = false
    public var input: String {
        get { inputPath.description }
        set { inputPath = MediaPath(newValue) }
    }
    public var output: String {
        get { outputPath.description }
        set { outputPath = MediaPath(newValue) }
    }
    public var preset: TranscodePreset
    public var limits: MediaLimits
    /// Codec threads (0 = the engine decides).
    public var threads: Int32
    /// Seconds between progress reports (at most; a report comes at the first frame after).
    public var progressInterval: Double

    /// Streamed input (pipe mode): read from here instead of the file `input`, which then
    /// only names the stream in messages.
    public var inputStream: (any ByteSource)?
    /// Streamed output (pipe mode): written here instead of the file `output`, in
    /// `outputFormat` ("mpegts", "mp4" (fragmented) or "matroska").
    public var outputStream: (any ByteSink)?
    public var outputFormat: String?
    /// Also report PSNR and SSIM against the scaled source (decodes the output again).
    public var measureQuality = false

    public static let streamFormats = ["mpegts", "mp4", "matroska"]

    public init(input: String, output: String, preset: TranscodePreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.init(inputPath: MediaPath(input), outputPath: MediaPath(output), preset: preset, limits: limits,
                  threads: threads, progressInterval: progressInterval)
    }

    public init(inputPath: MediaPath, outputPath: MediaPath, preset: TranscodePreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.inputPath = inputPath; self.outputPath = outputPath; self.preset = preset; self.limits = limits
        self.threads = threads; self.progressInterval = progressInterval
    }
}

public struct LadderRequest: Sendable {
    /// The input file, as the bytes the kernel sees (the stream's name in pipe mode).
    public var inputPath: MediaPath
    /// Created by the transcode: built under a temporary name next to it and renamed on
    /// success. Must not exist unless `overwrite` (then it is replaced, atomically).
    public var outputDirectoryPath: MediaPath
    public var overwrite = false
    public var input: String {
        get { inputPath.description }
        set { inputPath = MediaPath(newValue) }
    }
    public var outputDirectory: String {
        get { outputDirectoryPath.description }
        set { outputDirectoryPath = MediaPath(newValue) }
    }
    public var preset: LadderPreset
    public var limits: MediaLimits
    public var threads: Int32
    public var progressInterval: Double
    public var inputStream: (any ByteSource)?
    /// Also report PSNR and SSIM of every rendition against its scaled source.
    public var measureQuality = false

    public init(input: String, outputDirectory: String, preset: LadderPreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.init(inputPath: MediaPath(input), outputDirectoryPath: MediaPath(outputDirectory), preset: preset,
                  limits: limits, threads: threads, progressInterval: progressInterval)
    }

    public init(inputPath: MediaPath, outputDirectoryPath: MediaPath, preset: LadderPreset, limits: MediaLimits = MediaLimits(),
                threads: Int32 = 0, progressInterval: Double = 0.5) {
        self.inputPath = inputPath; self.outputDirectoryPath = outputDirectoryPath; self.preset = preset; self.limits = limits
        self.threads = threads; self.progressInterval = progressInterval
    }
}
