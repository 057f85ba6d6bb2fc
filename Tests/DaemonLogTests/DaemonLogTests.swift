import DaemonLog
import Glibc
import Logging
import Testing

/// The daemon's log lines, written for real through a pipe.
@Suite struct DaemonLogHandlerTests {
    /// A logger writing to a pipe, and a way to read what it wrote.
    private struct Piped {
        let logger: Logger
        let readFD: Int32
        let writeFD: Int32

        init(style: LogOutput.Style, level: Logger.Level = .info) {
            var fds: [Int32] = [-1, -1]
            precondition(pipe(&fds) == 0)
            readFD = fds[0]
            writeFD = fds[1]
            _ = fcntl(readFD, F_SETFL, O_NONBLOCK)
            let output = LogOutput(descriptor: fds[1], style: style)
            logger = Logger(label: "mcastfs") { DaemonLogHandler(label: $0, level: level, output: output) }
        }

        func written() -> String {
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(readFD, &buffer, buffer.count)
                if n <= 0 { break }
                bytes += buffer[..<n]
            }
            return String(decoding: bytes, as: UTF8.self)
        }

        func close() {
            Glibc.close(readFD)
            Glibc.close(writeFD)
        }
    }

    @Test func journalLinesCarryTheSyslogPriorityAndNothingElse() {
        let piped = Piped(style: .journal, level: .trace)
        defer { piped.close() }
        piped.logger.trace("t")
        piped.logger.debug("d")
        piped.logger.info("i")
        piped.logger.notice("n")
        piped.logger.warning("w")
        piped.logger.error("e")
        piped.logger.critical("c")
        #expect(piped.written() == "<7>t\n<7>d\n<6>i\n<5>n\n<4>w\n<3>e\n<2>c\n")
    }

    @Test func plainLinesCarryTimeProgramPidAndLevel() throws {
        let piped = Piped(style: .plain)
        defer { piped.close() }
        piped.logger.info("mounted", metadata: ["mountpoint": "/mnt/bus", "max_threads": "2"])
        let line = piped.written()
        let prefix = "mcastfs[\(getpid())] info: mounted max_threads=2 mountpoint=/mnt/bus\n"
        #expect(line.hasSuffix(" " + prefix), "\(line)")
        let time = String(line.prefix(while: { $0 != " " }))
        #expect(time.count == 24 && time.hasSuffix("Z") && time.dropFirst(10).first == "T", "\(time)")
    }

    @Test func belowTheLevelNothingIsWritten() {
        let piped = Piped(style: .journal, level: .warning)
        defer { piped.close() }
        piped.logger.info("not this")
        piped.logger.notice("nor this")
        piped.logger.warning("this")
        #expect(piped.written() == "<4>this\n")
    }

    @Test func oneLinePerEventWhateverTheMessageOrMetadataHold() {
        let piped = Piped(style: .journal)
        defer { piped.close() }
        var logger = piped.logger
        logger[metadataKey: "session"] = "s1"
        logger.info("two\nlines", metadata: ["path": "/mnt/a b", "quote": "say \"hi\"", "empty": "", "nl": "x\ny", "eq": "a=b"])
        #expect(piped.written() == #"<6>two\nlines empty="" eq="a=b" nl="x\ny" path="/mnt/a b" quote="say \"hi\"" session=s1"# + "\n")
    }

    @Test func levelsByTheirOptionNames() {
        #expect(DaemonLog.levelNames == ["trace", "debug", "info", "notice", "warning", "error", "critical"])
        for name in DaemonLog.levelNames { #expect(DaemonLog.level(named: name)?.rawValue == name) }
        for bad in ["", "INFO", "warn", "verbose", "info "] { #expect(DaemonLog.level(named: bad) == nil, "\(bad)") }
    }
}

@Suite struct LogOutputTests {
    @Test func theJournalStreamIsRecognisedByDeviceAndInode() throws {
        // stderr of this test process: whatever it is, JOURNAL_STREAM
        // naming its device and inode makes it the journal; anything else
        // does not.
        var info = stat()
        #expect(fstat(STDERR_FILENO, &info) == 0)
        let mine = "\(info.st_dev):\(info.st_ino)"
        let output = LogOutput.standardError(journalStream: mine)
        #expect(output.style == .journal)
        if output.descriptor != STDERR_FILENO { close(output.descriptor) }
        for other in ["\(info.st_dev):\(info.st_ino + 1)", "\(info.st_dev + 1):\(info.st_ino)", "", "1:2:3", "x:y"] {
            let output = LogOutput.standardError(journalStream: other)
            #expect(output.style == .plain, "\(other)")
            if output.descriptor != STDERR_FILENO { close(output.descriptor) }
        }
        #expect(LogOutput.standardError(journalStream: nil).style == .plain)
    }

    @Test func theJournalsCopyOfStderrOutlivesStderr() throws {
        var info = stat()
        #expect(fstat(STDERR_FILENO, &info) == 0)
        let output = LogOutput.standardError(journalStream: "\(info.st_dev):\(info.st_ino)")
        defer { if output.descriptor != STDERR_FILENO { close(output.descriptor) } }
        // What fuse_daemonize's dup2 of /dev/null onto fd 2 leaves alone.
        #expect(output.descriptor > STDERR_FILENO)
        #expect(fcntl(output.descriptor, F_GETFD) & FD_CLOEXEC != 0, "not inherited by programs the daemon runs")
    }
}
