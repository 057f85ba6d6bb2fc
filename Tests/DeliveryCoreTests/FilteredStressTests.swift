import Locking
import DeliveryCore
import Dispatch
import TestSupport
import Testing

import class Foundation.Thread

// Senders on several topics, single sends and batches, into members with
// filters, while one member's filter changes under load and a full member
// that matches nothing sits unread: then a checker proves that every
// matching member got exactly the matching messages, in the group's order,
// and that the full non-matching member held nobody back.

private let topics = ["t0.x", "t1.x", "t2.y", "t3.y"]

private func receiveWaiting(_ reader: Reader) -> MessageChunk? {
    let semaphore = DispatchSemaphore(value: 0)
    let result = AdaptiveMutex<Result<MessageChunk?, DeliveryError>?>(nil)
    reader.receive(maxBytes: 1 << 20, .blocking) { outcome in
        result.withLock { $0 = outcome }
        semaphore.signal()
    }
    semaphore.wait()
    return try! result.withLock { $0! }.get()
}

private struct Accepted: Sendable {
    let text: String
    let sequence: UInt64
    let sender: String?
}

@Suite struct FilteredStressTests {
    @Test(arguments: [1, 2] as [UInt64])
    func matchingMembersGetExactlyTheirMessagesInOneOrder(seed: UInt64) throws {
        let group = try Group(name: "filtered", settings: GroupSettings(capacity: 4))
        func settings(_ patterns: String, capacity: Int, dropWhenFull: Bool = false) throws -> MemberSettings {
            MemberSettings(capacity: capacity, dropWhenFull: dropWhenFull, subscribe: try Subscription(parsing: patterns))
        }
        // Full before the others join, then matching nothing: it must hold nobody back.
        let stuck = try group.join("stuck", settings: settings("fill", capacity: 1))
        try group.trySend(Message(Array("fill".utf8)))
        let nothing = try Subscription(parsing: "none.of.these")
        try group.configureMember(named: "stuck") { $0.subscribe = nothing }
        let steady: [String: String] = ["zero": "t0.>", "odd": "t1.*,t3.*", "ys": "*.y", "all": ""]
        var members: [String: Member] = [:]
        for (name, patterns) in steady.sorted(by: { $0.key < $1.key }) {
            members[name] = try group.join(name, settings: settings(patterns, capacity: name == "all" ? 8 : 2))
        }
        let lossy = try group.join("lossy", settings: settings("t2.>", capacity: 1, dropWhenFull: true))
        let toggle = try group.join("toggle", settings: settings("t0.>", capacity: 3))

        let accepted = AdaptiveMutex<[Accepted]>([])
        let received = AdaptiveMutex<[String: [(UInt64, String)]]>([:])
        let work = DispatchGroup()
        func run(_ body: @escaping @Sendable () -> Void) {
            work.enter()
            Thread.detachNewThread { body(); work.leave() }
        }
        for member in Array(members.values) + [lossy, toggle] {
            let reader = member.makeReader()
            run {
                var got: [(UInt64, String)] = []
                while let chunk = receiveWaiting(reader) {
                    got.append((chunk.message.sequence, String(decoding: chunk.bytes, as: UTF8.self)))
                }
                received.withLock { $0[member.name] = got }
            }
        }
        let stop = AdaptiveMutex(false)
        let toggler = DispatchGroup()
        toggler.enter()
        let patterns = [try Subscription(parsing: "t0.>"), try Subscription(parsing: "t3.>")]
        Thread.detachNewThread {
            var flip = false
            while !stop.withLock({ $0 }) {
                flip.toggle()
                try! group.configureMember(named: "toggle") { [flip] in $0.subscribe = patterns[flip ? 1 : 0] }
            }
            toggler.leave()
        }

        let senders = DispatchGroup()
        let senderMember: [Member?] = [nil, members["odd"], nil, members["zero"]]
        for index in 0..<4 {
            senders.enter()
            let asMember = senderMember[index]
            Thread.detachNewThread {
                var generator = SeededGenerator(seed: seed &* 1_000_003 &+ UInt64(index))
                var counter = 0
                while counter < 2000 {
                    let size = Int.random(in: 1...6, using: &generator)
                    var pending = (counter..<(counter + size)).map { n in
                        "\(topics.randomElement(using: &generator)!) \(index):\(n)"
                    }
                    counter += size
                    while !pending.isEmpty {
                        let semaphore = DispatchSemaphore(value: 0)
                        let result = AdaptiveMutex<Result<BatchReceipt, DeliveryError>?>(nil)
                        group.send(batch: pending.map { Message(Array($0.utf8)) }, as: asMember, .blocking) { outcome in
                            result.withLock { $0 = outcome }
                            semaphore.signal()
                        }
                        semaphore.wait()
                        let receipt = try! result.withLock { $0! }.get()
                        let sent = pending.prefix(receipt.delivered).enumerated().map { offset, text in
                            Accepted(text: text, sequence: receipt.firstSequence + UInt64(offset), sender: asMember?.name)
                        }
                        accepted.withLock { $0 += sent }
                        pending.removeFirst(receipt.delivered)
                    }
                }
                senders.leave()
            }
        }
        // A full member that matches nothing would hold every sender here.
        try #require(senders.wait(timeout: .now() + 60) == .success, "senders held back")
        stop.withLock { $0 = true }
        toggler.wait()
        let lossyDropped = group.snapshot().members.first { $0.name == "lossy" }!.dropped
        let stuckQueued = group.snapshot().members.first { $0.name == "stuck" }!.queued
        for member in Array(members.values) + [lossy, toggle, stuck] { member.leave() }
        try #require(work.wait(timeout: .now() + 60) == .success)

        let all = accepted.withLock { $0 }.sorted { $0.sequence < $1.sequence }
        let got = received.withLock { $0 }
        #expect(Set(all.map(\.sequence)).count == all.count)
        func matching(_ name: String, _ patterns: String) throws -> [UInt64] {
            let subscription = try Subscription(parsing: patterns)
            return all.filter { $0.sender != name && subscription.matches(payload: Array($0.text.utf8)) }.map(\.sequence)
        }
        let textOf = Dictionary(uniqueKeysWithValues: all.map { ($0.sequence, $0.text) })
        for (name, messages) in got {
            for (sequence, text) in messages { #expect(textOf[sequence] == text, "\(name): \(text) with a wrong sequence") }
            // Increasing sequences at every member: one order among common recipients.
            #expect(messages.map(\.0) == messages.map(\.0).sorted(), "\(name) out of order")
        }
        // Exactly once, and only the matching messages.
        for (name, patterns) in steady {
            #expect(got[name]!.map(\.0) == (try matching(name, patterns)), "\(name)")
        }
        let lossyExpected = try matching("lossy", "t2.>")
        let lossyGot = got["lossy"]!.map(\.0)
        #expect(Set(lossyGot).isSubset(of: Set(lossyExpected)))
        #expect(UInt64(lossyGot.count) + lossyDropped == UInt64(lossyExpected.count))
        let either = try Subscription(parsing: "t0.>,t3.>")
        let toggleGot = got["toggle"]!
        #expect(toggleGot.allSatisfy { either.matches(payload: Array($0.1.utf8)) })
        #expect(Set(toggleGot.map(\.0)).count == toggleGot.count)
        #expect(stuckQueued == 1)
    }
}
