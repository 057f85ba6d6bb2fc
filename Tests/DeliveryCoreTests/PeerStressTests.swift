import Locking
import DeliveryCore
import Dispatch
import Synchronization
import TestSupport
import Testing

import class Foundation.Thread

// Members that send to their peers, group and private senders, and readers
// of member and peer queues, all at once; then what each queue received is
// checked against what was accepted: a peer gets exactly its member's
// messages, atomically with the other recipients and in the one order of
// the group; private messages reach their member alone, in each writer's
// order; nothing waits forever.

private struct Accepted: Sendable {
    let writer: String
    let counter: Int
    let sequence: UInt64
}

private func payload(_ writer: String, _ counter: Int) -> Message { Message(Array("\(writer):\(counter)".utf8)) }

/// What a reader got: sequence, payload text, private, and drops before it.
private typealias Got = (sequence: UInt64, text: String, isPrivate: Bool, dropped: UInt32)

/// Reads until the end of the stream, waiting on an empty queue.
private func drain(_ reader: Reader) -> [Got] {
    var all: [Got] = []
    while true {
        let semaphore = DispatchSemaphore(value: 0)
        let outcome = AdaptiveMutex<Result<MessageChunk?, DeliveryError>?>(nil)
        reader.receive(maxBytes: 1 << 20, .blocking) { result in
            outcome.withLock { $0 = result }
            semaphore.signal()
        }
        semaphore.wait()
        guard let chunk = try! outcome.withLock({ $0! }).get() else { return all }
        all.append((chunk.message.sequence, String(decoding: chunk.bytes, as: UTF8.self), chunk.message.isPrivate, chunk.droppedBefore))
    }
}

/// Waits for a completion-based send on a plain thread; nil: cancelled.
private func wait<T: Sendable>(
    _ start: (@escaping @Sendable (Result<T, DeliveryError>) -> Void) -> Waiting?, cancelling: Bool
) -> T? {
    let semaphore = DispatchSemaphore(value: 0)
    let outcome = AdaptiveMutex<Result<T, DeliveryError>?>(nil)
    let waiting = start { result in
        outcome.withLock { $0 = result }
        semaphore.signal()
    }
    if cancelling, let waiting, waiting.cancel() { return nil }
    semaphore.wait()
    return try! outcome.withLock { $0! }.get()
}

@Suite struct PeerStressTests {
    @Test(arguments: [1, 2])
    func peersAndPrivateSendsKeepEveryRuleUnderConcurrency(seed: UInt64) throws {
        let group = try Group(name: "peers", settings: GroupSettings(capacity: 3))
        let talkers = try (0..<2).map { try group.join("talker\($0)", settings: MemberSettings(capacity: 3, sendToPeer: true)) }
        let listener = try group.join("listener", settings: MemberSettings(capacity: 2))
        let lossy = try group.join("lossy", settings: MemberSettings(capacity: 2, dropWhenFull: true))
        let accepted = AdaptiveMutex<[Accepted]>([])
        let received = AdaptiveMutex<[String: [Got]]>([:])
        let readers = DispatchGroup(), writers = DispatchGroup()
        let perWriter = 800

        func run(_ done: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
            done.enter()
            Thread.detachNewThread { body(); done.leave() }
        }
        for member in talkers + [listener, lossy] {
            let reader = member.makeReader()
            run(readers) { let got = drain(reader); received.withLock { $0[member.name] = got } }
        }
        for talker in talkers {
            let reader = talker.makePeerReader()
            run(readers) { let got = drain(reader); received.withLock { $0["peer:" + talker.name] = got } }
        }

        // Writers: each talker as itself (singles and batches), an anonymous
        // one, and two private writers, to the listener and to talker0.
        // Blocking sends are sometimes cancelled; non-blocking ones refused.
        enum Kind: Sendable { case member(Member), anonymous, privately(Member) }
        let plan: [(String, Kind)] = [
            ("talker0", .member(talkers[0])), ("talker1", .member(talkers[1])), ("anon", .anonymous),
            ("to-listener", .privately(listener)), ("to-talker0", .privately(talkers[0])),
        ]
        for (index, (name, kind)) in plan.enumerated() {
            run(writers) {
                var generator = SeededGenerator(seed: seed &* 1_000_003 &+ UInt64(index))
                var counter = 0
                while counter < perWriter {
                    let size = min(Int.random(in: 1...4, using: &generator), perWriter - counter)
                    let messages = (counter..<counter + size).map { payload(name, $0) }
                    let cancelling = Int.random(in: 0..<5, using: &generator) == 0
                    let blocking = Int.random(in: 0..<3, using: &generator) != 0
                    // (first sequence, count) of what was delivered, nil if
                    // nothing was; and how many messages were tried.
                    let delivered: (first: UInt64, count: Int)?
                    var tried = size
                    switch (kind, blocking) {
                    case (.member(let member), true):
                        delivered = wait({ group.send(batch: messages, as: member, .blocking, completion: $0) }, cancelling: cancelling)
                            .map { ($0.firstSequence, $0.delivered) }
                    case (.member(let member), false):
                        delivered = (try? group.trySend(batch: messages, as: member)).map { ($0.firstSequence, $0.delivered) }
                    case (.anonymous, true):
                        tried = 1
                        delivered = wait({ group.send(messages[0], .blocking, completion: $0) }, cancelling: cancelling)
                            .map { ($0.sequence, 1) }
                    case (.anonymous, false):
                        tried = 1
                        delivered = (try? group.trySend(messages[0])).map { ($0.sequence, 1) }
                    case (.privately(let member), true):
                        delivered = wait({ group.sendPrivate(batch: messages, to: member, .blocking, completion: $0) }, cancelling: cancelling)
                            .map { ($0.firstSequence, $0.delivered) }
                    case (.privately(let member), false):
                        tried = 1
                        delivered = (try? group.trySendPrivate(messages[0], to: member)).map { ($0.sequence, 1) }
                    }
                    // What was refused or cancelled is not sent again; a
                    // short batch goes on from where it stopped.
                    guard let delivered else {
                        counter += tried
                        continue
                    }
                    accepted.withLock { all in
                        all += (0..<delivered.count).map { Accepted(writer: name, counter: counter + $0, sequence: delivered.first + UInt64($0)) }
                    }
                    counter += delivered.count
                }
            }
        }
        // Queue bounds that change under load: talker1's, and so its peer's.
        let stop = Atomic<Bool>(false)
        run(readers) {
            var generator = SeededGenerator(seed: seed &* 7)
            while !stop.load(ordering: .relaxed) {
                let capacity = Int.random(in: 1...4, using: &generator)
                try? group.configureMember(named: "talker1") { $0.capacity = capacity }
            }
        }

        #expect(writers.wait(timeout: .now() + 60) == .success, "a writer never finished")
        stop.store(true, ordering: .relaxed)
        for member in talkers + [listener, lossy] { member.leave() }
        #expect(readers.wait(timeout: .now() + 60) == .success, "a reader never finished")
        check(accepted.withLock { $0 }, received.withLock { $0 }, sent: group.snapshot().sent)
    }

    private func check(_ accepted: [Accepted], _ received: [String: [Got]], sent: UInt64) {
        #expect(sent == UInt64(accepted.count))
        let byText = Dictionary(uniqueKeysWithValues: accepted.map { ("\($0.writer):\($0.counter)", $0) })
        #expect(byText.count == accepted.count)
        func expected(_ keep: (Accepted) -> Bool) -> [UInt64] { accepted.filter(keep).map(\.sequence).sorted() }
        let isGroup = { (a: Accepted) in a.writer == "talker0" || a.writer == "talker1" || a.writer == "anon" }

        for (name, got) in received {
            // One order: every queue, peers included, in sequence order.
            #expect(got.map(\.sequence) == got.map(\.sequence).sorted(), "\(name) out of order")
            for item in got {
                let sent = byText[item.text]
                #expect(sent?.sequence == item.sequence, "\(name) got \(item.text) unaccepted or renumbered")
                #expect(item.isPrivate == (sent.map { !isGroup($0) } ?? false), "\(name): \(item.text) private flag")
            }
        }
        // A peer gets exactly what its member sent, atomically with the
        // member's other recipients (the listener got every group message).
        for talker in ["talker0", "talker1"] {
            #expect(received["peer:" + talker]!.map(\.sequence) == expected { $0.writer == talker }, "peer of \(talker)")
        }
        #expect(received["listener"]!.map(\.sequence) == expected { isGroup($0) || $0.writer == "to-listener" })
        #expect(received["talker0"]!.map(\.sequence) == expected { ($0.writer != "talker0" && isGroup($0)) || $0.writer == "to-talker0" })
        #expect(received["talker1"]!.map(\.sequence) == expected { $0.writer != "talker1" && isGroup($0) })
        // The drop-when-full member: what it did not get it missed, counted
        // before the next message it got; private messages were never its.
        let all = expected(isGroup)
        var next = 0
        for item in received["lossy"]! {
            var missed: UInt32 = 0
            while next < all.count && all[next] < item.sequence { missed += 1; next += 1 }
            next += 1
            #expect(item.dropped == missed, "lossy: \(item.dropped) reported, \(missed) missed before \(item.sequence)")
        }
        // Each writer's messages were accepted in the order it wrote them.
        for writer in Set(accepted.map(\.writer)) {
            let mine = accepted.filter { $0.writer == writer }.sorted { $0.counter < $1.counter }
            #expect(mine.map(\.sequence) == mine.map(\.sequence).sorted(), "\(writer) reordered")
        }
    }
}
