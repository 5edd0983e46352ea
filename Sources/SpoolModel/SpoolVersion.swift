// SpoolModel.SpoolVersion: the release every part reports (CLI, API, engines).

public enum SpoolVersion {
    public static let string = "0.1.0"
}
