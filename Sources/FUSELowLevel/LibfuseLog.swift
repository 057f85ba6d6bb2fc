import CFuse
import Glibc
import Synchronization

/// libfuse reports its errors only as log lines (fuse_log → stderr). To give
/// `FUSESessionError` a precise message we install a log function that still
/// prints everything to stderr, and also remembers the last few lines.
/// Only this file may call the cfuse_log_* helpers (shim.h).
enum LibfuseLog {
    private struct Lines {
        var partial = ""
        var recent: [String] = []
        var count = 0
    }

    private static let lines = Mutex(Lines())

    static let installed: Void = {
        cfuse_log_install(sink)
    }()

    /// A marker to pass to `lastLine(since:)`.
    static var marker: Int {
        _ = installed
        return lines.withLock { $0.count }
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
    LibfuseLog.record(String(cString: text))
}
