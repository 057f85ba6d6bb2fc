import CFuse
import Glibc
import Locking
import Logging
import Synchronization

/// libfuse reports its errors only as log lines (fuse_log). We install a log
/// function that sends each line, at its level, to the logger of the newest
/// session (`route(to:)`; raw to stderr before there is one), except while
/// `holdingBack`, and remembers the last few lines, so that
/// `FUSESessionError` can carry the precise one. Only this file may call
/// the cfuse_log_* helpers (shim.h).
///
/// Not every line of libfuse 3.14 comes this way: a few failures of its own
/// reads and writes of /dev/fuse go to perror(3) ("fuse: writing device:
/// ..."), straight to stderr.
enum LibfuseLog {
    struct Line {
        var level: Logger.Level
        var text: String
    }

    private struct Lines {
        var partial = ""
        /// The level of the first piece of `partial`: libfuse logs some
        /// lines in several calls.
        var partialLevel = Logger.Level.info
        var recent: [Line] = []
        var count = 0
    }

    private static let lines = AdaptiveMutex(Lines())
    private static let logger = AdaptiveMutex<Logger?>(nil)
    /// Whether libfuse's lines are logged as they come (see `holdingBack`).
    static let echo = Atomic(true)

    static let installed: Void = {
        cfuse_log_install(sink)
    }()

    /// From now on libfuse's lines go to `logger`.
    static func route(to logger: Logger) {
        _ = installed
        self.logger.withLock { $0 = logger }
    }

    /// A marker to pass to `lastLine(since:)`.
    static var marker: Int {
        _ = installed
        return lines.withLock { $0.count }
    }

    /// Runs `body` with libfuse's lines held back. If it failed (as
    /// `succeeded` judges its result), they are dropped: the caller's error
    /// carries the line that matters, so a start-up error stays one line. If
    /// it succeeded, they are logged after all.
    static func holdingBack<T>(_ body: () -> T, succeeded: (T) -> Bool) -> T {
        let start = marker
        echo.store(false, ordering: .releasing)
        let result = body()
        echo.store(true, ordering: .releasing)
        if succeeded(result) {
            for line in lines(since: start) { emit(line) }
        }
        return result
    }

    /// The complete lines logged after `marker` (the last 16 at most).
    private static func lines(since marker: Int) -> [Line] {
        lines.withLock { l in Array(l.recent.suffix(max(0, min(l.count - marker, l.recent.count)))) }
    }

    /// The last complete line logged after `marker`, if any.
    static func lastLine(since marker: Int) -> String? {
        lines.withLock { l in
            guard l.count > marker, let last = l.recent.last else { return nil }
            return last.text
        }
    }

    fileprivate static func emit(_ line: Line) {
        if let logger = logger.withLock({ $0 }) {
            logger.log(level: line.level, "\(line.text)")
        } else {
            let bytes = Array((line.text + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }

    /// Adds a piece of libfuse's log; returns the lines it completed.
    fileprivate static func record(_ text: String, level: Logger.Level) -> [Line] {
        lines.withLock { l in
            if l.partial.isEmpty { l.partialLevel = level }
            l.partial += text
            var complete: [Line] = []
            while let newline = l.partial.firstIndex(of: "\n") {
                let line = Line(level: l.partialLevel, text: String(l.partial[..<newline]))
                l.partial = String(l.partial[l.partial.index(after: newline)...])
                l.partialLevel = level
                guard !line.text.isEmpty else { continue }
                l.recent.append(line)
                if l.recent.count > 16 { l.recent.removeFirst() }
                l.count += 1
                complete.append(line)
            }
            return complete
        }
    }

    /// enum fuse_log_level (syslog's priorities) as swift-log's levels.
    static func level(_ fuseLevel: Int32) -> Logger.Level {
        switch fuseLevel {
        case ...2: .critical  // EMERG, ALERT, CRIT
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
    }
}

private let sink: @convention(c) (Int32, UnsafePointer<CChar>?) -> Void = { level, text in
    guard let text else { return }
    let complete = LibfuseLog.record(String(cString: text), level: LibfuseLog.level(level))
    if LibfuseLog.echo.load(ordering: .acquiring) {
        for line in complete { LibfuseLog.emit(line) }
    }
}
