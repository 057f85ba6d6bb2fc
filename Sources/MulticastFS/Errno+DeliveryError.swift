public import DeliveryCore
public import SystemPackage

extension Errno {
    /// Every error of the delivery core, as the errno the filesystem answers.
    /// No `default`: a new core error must be given its errno here.
    public init(_ error: DeliveryError) {
        switch error {
        case .wouldBlock: self = .resourceTemporarilyUnavailable
        case .messageTooLarge, .doesNotFit: self = .messageTooLong
        case .sendNotPermitted: self = .notPermitted
        // The other end is gone: the member left (the sender, or the one a
        // private message is for), or its group was removed.
        case .senderLeft, .groupClosed, .recipientLeft: self = .brokenPipe
        case .cancelled: self = .interrupted
        case .groupHasMembers: self = .directoryNotEmpty
        case .memberExists: self = .fileExists
        // The contract: a ctl command naming a missing member, or a bad value.
        case .noSuchMember, .invalidSetting, .invalidSubscription: self = .invalidArgument
        // The daemon is going away; after unmount, clients see ENOTCONN too.
        case .shutDown: self = .socketNotConnected
        // A clustered group's NATS cluster is out of reach (docs/cluster.md).
        case .unavailable: self = .ioError
        }
    }
}
