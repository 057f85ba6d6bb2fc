import DeliveryCore

/// Where a write's messages go: to the group, as a member or anonymously
/// (`G/NAME`, `G/send`), or privately to one member (`G/peers/NAME`). The
/// record view and line messages send the same way to either.
enum Destination: Sendable {
    case group(Group, as: Member?)
    case privately(Member)

    var group: Group {
        switch self {
        case .group(let group, _): group
        case .privately(let member): member.group
        }
    }

    func trySend(_ message: Message) throws(DeliveryError) {
        switch self {
        case .group(let group, let sender): try group.trySend(message, as: sender)
        case .privately(let member): try member.group.trySendPrivate(message, to: member)
        }
    }

    @discardableResult
    func send(_ message: Message, _ blocking: Blocking,
              completion: @escaping @Sendable (Result<SendReceipt, DeliveryError>) -> Void) -> Waiting? {
        switch self {
        case .group(let group, let sender): group.send(message, as: sender, blocking, completion: completion)
        case .privately(let member): member.group.sendPrivate(message, to: member, blocking, completion: completion)
        }
    }

    func trySend(batch messages: [Message]) throws(DeliveryError) -> BatchReceipt {
        switch self {
        case .group(let group, let sender): try group.trySend(batch: messages, as: sender)
        case .privately(let member): try member.group.trySendPrivate(batch: messages, to: member)
        }
    }

    func send(batch messages: [Message], _ blocking: Blocking,
              completion: @escaping @Sendable (Result<BatchReceipt, DeliveryError>) -> Void) -> Waiting? {
        switch self {
        case .group(let group, let sender): group.send(batch: messages, as: sender, blocking, completion: completion)
        case .privately(let member): member.group.sendPrivate(batch: messages, to: member, blocking, completion: completion)
        }
    }
}
