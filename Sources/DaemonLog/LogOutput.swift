import Glibc
public import Logging

/// Where the daemon's log lines go, and in which style.
public struct LogOutput: Sendable {
    public enum Style: Sendable, Equatable {
        /// Time, program name and pid, level: for a terminal or a file.
        case plain
        /// `<N>` syslog priority prefixes, for the journal's stream.
        case journal
    }

    public let descriptor: Int32
    public let style: Style

    public init(descriptor: Int32, style: Style) {
        self.descriptor = descriptor
        self.style = style
    }

    /// stderr, in the journal's style when it is the journal's stream.
    ///
    /// systemd gives a service whose stderr is connected to the journal
    /// `JOURNAL_STREAM=DEVICE:INODE` of that stream (systemd.exec(5)); a
    /// program compares it with fstat(2) of its stderr, since a child whose
    /// stderr was redirected inherits the variable too.
    ///
    /// Daemonizing (`fuse_daemonize`, without -f) points stderr at
    /// /dev/null, as every libfuse filesystem does, so that a terminal or a
    /// pipe (`mcastfs ... 2>&1 | tee`) is let go. A journal stream or a
    /// regular file holds nobody up: the log keeps a copy of stderr then,
    /// and goes on after the mount, in the background too, which is how a
    /// mount made by fstab or a systemd .mount unit still logs its unmount.
    public static func standardError(journalStream: String?) -> LogOutput {
        var info = stat()
        guard fstat(STDERR_FILENO, &info) == 0 else { return LogOutput(descriptor: STDERR_FILENO, style: .plain) }
        let journal = journalStream.map { isStream($0, device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) } ?? false
        let style: Style = journal ? .journal : .plain
        guard journal || info.st_mode & S_IFMT == S_IFREG else { return LogOutput(descriptor: STDERR_FILENO, style: style) }
        let copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3)
        return LogOutput(descriptor: copy >= 0 ? copy : STDERR_FILENO, style: style)
    }

    /// Whether `JOURNAL_STREAM`'s value names the stream `device`:`inode`.
    package static func isStream(_ value: String, device: UInt64, inode: UInt64) -> Bool {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let d = UInt64(parts[0]), let i = UInt64(parts[1]) else { return false }
        return d == device && i == inode
    }

    /// Writes `line` whole, retrying after signals; a log that cannot be
    /// written (stderr closed, disk full) is given up silently: there is
    /// nowhere left to say so.
    func write(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var done = 0
            while done < buffer.count {
                let n = Glibc.write(descriptor, buffer.baseAddress! + done, buffer.count - done)
                if n > 0 {
                    done += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }
}

/// The daemon's logging, set up once at start-up.
public enum DaemonLog {
    /// What `-o log_level=` takes, from the most to the least said.
    public static let levelNames = Logger.Level.allCases.map(\.rawValue)

    /// `trace`, `debug`, `info`, `notice`, `warning`, `error` or `critical`.
    public static func level(named name: String) -> Logger.Level? {
        Logger.Level(rawValue: name)
    }

    /// Makes every `Logger` of the process write through `DaemonLogHandler`
    /// at `level`, to stderr (see `LogOutput.standardError`). Once per
    /// process, before the first logger is made.
    public static func bootstrap(level: Logger.Level) {
        let output = LogOutput.standardError(journalStream: getenv("JOURNAL_STREAM").map { String(cString: $0) })
        LoggingSystem.bootstrap { label in
            DaemonLogHandler(label: label, level: level, output: output)
        }
    }
}
