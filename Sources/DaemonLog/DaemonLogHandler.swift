import Glibc
public import Logging

/// The daemon's swift-log handler: one line per event, written with one
/// write(2) to the log's descriptor (stderr, or a copy of it that outlives
/// daemonizing: see `LogOutput`).
///
/// Plain, for a terminal or a file:
///
///     2026-12-01T11:57:40.123Z mcastfs[4242] info: mounted mountpoint=/mnt/bus max_threads=2
///
/// Journal, when stderr is the journal's stream (`LogOutput.Style.journal`):
/// the syslog priority as sd-daemon(3)'s `<N>` prefix, and no time or
/// program name, which the journal records itself:
///
///     <6>mounted mountpoint=/mnt/bus max_threads=2
///
/// Metadata follows the message as `key=value`, keys sorted, values quoted
/// (with `\`, `"` and control characters escaped) when they hold a space, a
/// quote, `=`, a backslash or a control character, or are empty. A message
/// never spans lines: a line feed in it is written `\n`.
public struct DaemonLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public let label: String
    public let output: LogOutput

    public init(label: String, level: Logger.Level, output: LogOutput, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.output = output
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let given = event.metadata { all.merge(given) { $1 } }
        if let error = event.error { all["error"] = "\(error)" }
        output.write(line(level: event.level, message: event.message.description, metadata: all, time: .now()))
    }

    /// The text of one event, line feed included.
    package func line(level: Logger.Level, message: String, metadata: Logger.Metadata, time: WallClock) -> String {
        var text: String
        switch output.style {
        case .journal:
            text = "<\(Self.priority(of: level))>"
        case .plain:
            text = "\(time.iso8601) \(label)[\(getpid())] \(level.rawValue): "
        }
        text += message.contains("\n") ? message.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\\n") : message
        for key in metadata.keys.sorted() {
            text += " \(key)=\(Self.quoted(Self.flatten(metadata[key]!)))"
        }
        return text + "\n"
    }

    /// syslog(3) priorities, as the journal reads them (sd-daemon(3)).
    package static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7  // LOG_DEBUG
        case .info: 6  // LOG_INFO
        case .notice: 5  // LOG_NOTICE
        case .warning: 4  // LOG_WARNING
        case .error: 3  // LOG_ERR
        case .critical: 2  // LOG_CRIT
        }
    }

    private static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): "[" + values.map(flatten).joined(separator: ", ") + "]"
        case .dictionary(let values): "[" + values.keys.sorted().map { "\($0): \(flatten(values[$0]!))" }.joined(separator: ", ") + "]"
        }
    }

    package static func quoted(_ value: String) -> String {
        let plain = !value.isEmpty && value.unicodeScalars.allSatisfy { scalar in
            scalar != " " && scalar != "\"" && scalar != "=" && scalar != "\\" && scalar.properties.generalCategory != .control
        }
        if plain { return value }
        var text = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": text += "\\\\"
            case "\"": text += "\\\""
            case "\n": text += "\\n"
            case "\t": text += "\\t"
            case "\r": text += "\\r"
            case _ where scalar.properties.generalCategory == .control:
                text += "\\u{" + String(scalar.value, radix: 16) + "}"
            default: text.unicodeScalars.append(scalar)
            }
        }
        return text + "\""
    }
}

/// A wall-clock time, for plain log lines.
package struct WallClock: Sendable {
    let seconds: Int
    let nanoseconds: Int

    package init(seconds: Int, nanoseconds: Int) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    static func now() -> WallClock {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return WallClock(seconds: time.tv_sec, nanoseconds: time.tv_nsec)
    }

    /// UTC, to the millisecond: 2026-12-01T11:57:40.123Z.
    package var iso8601: String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let millis = nanoseconds / 1_000_000
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}
