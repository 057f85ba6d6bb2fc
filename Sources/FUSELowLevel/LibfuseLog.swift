import CFuse
import Glibc
import Locking
import Synchronization

/// libfuse reports its errors only as log lines (fuse_log → stderr). To give
/// `FUSESessionError` a precise message we install a log function that prints
/// to stderr (except while `holdingBack`) and remembers the last few lines.
/// Only this file may call the cfuse_log_* helpers (shim.h).
enum LibfuseLog {
    private struct Lines {
        var partial = ""
        var recent: [String] = []
        var count = 0
    }

    private static let lines = AdaptiveMutex(Lines())
    /// Whether libfuse's lines go to stderr as they come (see `holdingBack`).
    static let echo = Atomic(true)

    static let installed: Void = {
        cfuse_log_install(sink)
    }()

    /// A marker to pass to `lastLine(since:)`.
    static var marker: Int {
        _ = installed
        return lines.withLock { $0.count }
    }

    /// Runs `body` with libfuse's lines kept off stderr. If it failed (as
    /// `succeeded` judges its result), they are dropped: the caller's error
    /// carries the line that matters, so a start-up error stays one line. If
    /// it succeeded, they are printed after all.
    static func holdingBack<T>(_ body: () -> T, succeeded: (T) -> Bool) -> T {
        let start = marker
        echo.store(false, ordering: .releasing)
        let result = body()
        echo.store(true, ordering: .releasing)
        if succeeded(result) {
            for line in lines(since: start) {
                let bytes = Array((line + "\n").utf8)
                _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            }
        }
        return result
    }

    /// The complete lines logged after `marker` (the last 16 at most).
    private static func lines(since marker: Int) -> [String] {
        lines.withLock { l in Array(l.recent.suffix(max(0, min(l.count - marker, l.recent.count)))) }
    }

    /// The last complete line logged after `marker`, if any.
    static func lastLine(since marker: Int) -> String? {
        lines.withLock { l in
            guard l.count > marker, let last = l.recent.last else { return nil }
            return last
        }
    }

    fileprivate static func record(_ text: String) {
        lines.withLock { l in
            l.partial += text
            while let newline = l.partial.firstIndex(of: "\n") {
                let line = String(l.partial[..<newline])
                l.partial = String(l.partial[l.partial.index(after: newline)...])
                guard !line.isEmpty else { continue }
                l.recent.append(line)
                if l.recent.count > 16 { l.recent.removeFirst() }
                l.count += 1
            }
        }
    }
}

private let sink: @convention(c) (Int32, UnsafePointer<CChar>?) -> Void = { _, text in
    guard let text else { return }
    if LibfuseLog.echo.load(ordering: .acquiring) { _ = Glibc.write(STDERR_FILENO, text, strlen(text)) }
    LibfuseLog.record(String(cString: text))
}
