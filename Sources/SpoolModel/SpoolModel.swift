// SpoolModel: the domain model every service shares, as plain values without libav or
// the runtime, so a dispatcher validates a submission and an engine reports on a job with
// the same types: ids (Identifiers), job states and their one transition table
// (JobState), error codes with their HTTP status (ModelError), transcode settings and
// presets (Presets, LadderPresets), the number formatters (NumberFormat), and the release.

/// The release every part reports (CLI, API, engines).
public enum SpoolVersion {
    public static let string = "0.1.0"
}
