import FUSELowLevel
import FUSETesting
import Locking
import Logging
import SystemPackage
import Testing

/// What a session logs of its own failed calls: each once, at error; and
/// what is no failure (a request the kernel forgot) not at all.
@Suite struct SessionLoggingTests {
    /// Every event a logger was given.
    final class Recorded: Sendable {
        struct Event: Sendable, Equatable {
            var level: Logger.Level
            var message: String
            var errno: String?
        }

        private let events = AdaptiveMutex<[Event]>([])

        var all: [Event] { events.withLock { $0 } }

        var logger: Logger {
            Logger(label: "test") { _ in Handler(recorded: self) }
        }

        fileprivate func add(_ event: Event) { events.withLock { $0.append(event) } }
    }

    struct Handler: LogHandler {
        let recorded: Recorded
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorded.add(.init(level: event.level, message: event.message.description,
                               errno: event.metadata?["errno"].map { "\($0)" }))
        }
    }

    @Test func aReplyTheKernelRefusesIsLoggedOnceAtError() throws {
        let recorded = Recorded()
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs, logger: recorded.logger)
        let (u, reply) = kernel.hand(.lookup(parent: 1, name: "a"), to: fs, ReplyEntry.self)
        kernel.refuseReply(to: u, with: .invalidArgument)
        #expect(reply.error(.noSuchFileOrDirectory) == .failed(.invalidArgument))
        #expect(recorded.all == [.init(level: .error, message: "the kernel refused a reply", errno: "\(Errno.invalidArgument)")])
    }

    @Test func aRequestTheKernelForgotIsNoFailure() throws {
        let recorded = Recorded()
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs, logger: recorded.logger)
        let (u, reply) = kernel.hand(.read(ino: 2, fh: 1, size: 10), to: fs, ReplyData.self)
        kernel.abandon(u)
        #expect(reply.data([1, 2, 3]) == .requestGone)
        #expect(recorded.all.isEmpty)
    }

    @Test func aRefusedPollNotificationIsLoggedOnceAtError() throws {
        let recorded = Recorded()
        let fs = Holding()
        let kernel = try FakeKernel(serving: fs, logger: recorded.logger)
        _ = kernel.hand(.poll(ino: 2, fh: 1, kh: 7, scheduleNotify: true), to: fs, ReplyPoll.self).1.events([])
        let handle = try #require(fs.takeHandle())
        kernel.refuseNotifications(with: .invalidArgument)
        #expect(!handle.notify())
        #expect(recorded.all == [.init(level: .error, message: "the kernel refused a poll notification", errno: "\(Errno.invalidArgument)")])
    }
}
