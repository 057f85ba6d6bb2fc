// Connected groups in the core, one thread (Sources/DeliveryCore/Peers.swift):
// a member sending with send_to_peer (its peer one more recipient), beside the
// same member sending without it, and private sends to one member. Each
// beside the locked-deque anchor with as many queues as deliveries.

import DeliveryCore

private let message = Message([UInt8](repeating: 0x61, count: 64))

/// A member sends, every recipient (and, with `toPeer`, its peer) receives:
/// ns per delivery.
private func memberSendReceive(fanOut: Int, toPeer: Bool, messages: Int) -> Double {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1024))
    let sender = try! group.join("sender", settings: MemberSettings(capacity: 1024, sendToPeer: toPeer))
    var readers = (0..<fanOut).map { try! group.join("m\($0)").makeReader() }
    if toPeer { readers.append(sender.makePeerReader()) }
    return best {
        nanoseconds {
            for _ in 0..<messages {
                try! sender.trySend(message)
                for reader in readers { blackHole(try! reader.tryReceive(maxBytes: 4096)) }
            }
        } / Double(messages * readers.count)
    }
}

/// Private sends to one member, each received: ns per message.
private func privateSendReceive(messages: Int) -> Double {
    let group = try! Group(name: "bench", settings: GroupSettings(capacity: 1024))
    let member = try! group.join("m")
    let reader = member.makeReader()
    return best {
        nanoseconds {
            for _ in 0..<messages {
                try! group.trySendPrivate(message, to: member)
                blackHole(try! reader.tryReceive(maxBytes: 4096))
            }
        } / Double(messages)
    }
}

func peerRows(scale: Int) {
    print("== connected groups, one thread: a member sends, with and without send_to_peer; private sends (ns per delivery)")
    for fanOut in [1, 16] {
        let messages = 20_000 * scale / fanOut + 1000
        let plain = memberSendReceive(fanOut: fanOut, toPeer: false, messages: messages)
        report(Row(scenario: "member send+receive, fan-out \(fanOut)", unit: "ns/recipient", value: plain,
                   anchorName: "locked deque", anchor: lockedDequeAnchor(fanOut: fanOut, messages: messages)))
        report(Row(scenario: "send_to_peer send+receive, fan-out \(fanOut)+peer", unit: "ns/recipient",
                   value: memberSendReceive(fanOut: fanOut, toPeer: true, messages: messages),
                   anchorName: "locked deque", anchor: lockedDequeAnchor(fanOut: fanOut + 1, messages: messages)))
    }
    let messages = 20_000 * scale
    report(Row(scenario: "private send+receive", unit: "ns/message", value: privateSendReceive(messages: messages),
               anchorName: "locked deque", anchor: lockedDequeAnchor(fanOut: 1, messages: messages)))
}
