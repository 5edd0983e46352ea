// Events: placeholder so the package resolves; replaced by the module's real sources.
public enum EventsModule {}
