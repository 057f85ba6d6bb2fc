import Cluster
import DeliveryCore
import SystemPackage

// The cluster's records hold settings as JSON-friendly values; the
// filesystem and the core use their own types. One place converts.

extension GroupRecord.Settings {
    init(_ settings: GroupSettings) {
        self.init(capacity: settings.capacity, queueBytes: settings.queueBytes, maxMessage: settings.maxMessage,
                  send: settings.sendPolicy == .members ? "members" : "all", message: settings.messageBoundary.rawValue,
                  sendToPeer: settings.sendToPeer)
    }
}

extension GroupSettings {
    init(_ shared: GroupRecord.Settings) {
        self.init(capacity: shared.capacity, queueBytes: shared.queueBytes, maxMessage: shared.maxMessage,
                  sendPolicy: shared.send == "members" ? .members : .anyone,
                  messageBoundary: MessageBoundary(rawValue: shared.message) ?? .write, sendToPeer: shared.sendToPeer)
    }
}

extension MemberRecord.Settings {
    init(_ settings: MemberSettings) {
        self.init(capacity: settings.capacity, queueBytes: settings.queueBytes, loopback: settings.loopback,
                  dropWhenFull: settings.dropWhenFull, subscribe: settings.subscribe.text, sendToPeer: settings.sendToPeer)
    }
}

extension MemberSettings {
    /// A subscription another node accepted parses here too; one that does
    /// not (a newer grammar) is shown as receiving everything.
    init(_ shared: MemberRecord.Settings) {
        self.init(capacity: shared.capacity, queueBytes: shared.queueBytes, loopback: shared.loopback,
                  dropWhenFull: shared.dropWhenFull, subscribe: (try? Subscription(parsing: shared.subscribe)) ?? Subscription(),
                  sendToPeer: shared.sendToPeer)
    }
}

extension Errno {
    /// Every cluster error as the errno the filesystem answers (docs/cluster.md).
    init(_ error: ClusterError) {
        switch error {
        case .exists: self = .fileExists
        case .notFound: self = .noSuchFileOrDirectory
        case .notEmpty: self = .directoryNotEmpty
        case .full: self = .resourceTemporarilyUnavailable
        case .unreachable, .refused, .nodeNameInUse: self = .ioError
        case .busy: self = .resourceBusy
        case .invalid: self = .invalidArgument
        case .tooLarge: self = .messageTooLong
        case .cancelled: self = .interrupted
        }
    }
}

extension DeliveryError {
    /// A sequencer's failure, as the core reports it to the front end.
    init(_ error: ClusterError) {
        switch error {
        case .full: self = .wouldBlock
        case .tooLarge: self = .messageTooLarge(size: 0, limit: 0)
        case .cancelled: self = .cancelled
        case .notFound: self = .groupClosed
        default: self = .unavailable(reason: error.description)
        }
    }
}
