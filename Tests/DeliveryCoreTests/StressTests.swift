import Locking
import DeliveryCore
import Synchronization
import Dispatch
import TestSupport
import Testing

// Many threads sending (blocking, non-blocking, cancelled), receiving, joining,
// leaving and changing settings at once; then a checker proves from what was
// sent and received that the core kept its promises.

private struct Sent: Sendable {
    let sender: Int
    let counter: Int
    let sequence: UInt64
}

private func payload(sender: Int, counter: Int) -> Message {
    Message(Array("\(sender):\(counter)".utf8))
}

private func decode(_ chunk: MessageChunk) -> String { String(decoding: chunk.bytes, as: UTF8.self) }

/// Blocking receive on a plain thread.
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

/// What a reader got: sequence, payload, and the drops reported before it.
private typealias Got = (UInt64, String, UInt32)

private func got(_ chunk: MessageChunk) -> Got { (chunk.message.sequence, decode(chunk), chunk.droppedBefore) }

/// Reads until the end of the stream.
private func drain(_ reader: Reader) -> [Got] {
    var all: [Got] = []
    while let chunk = receiveWaiting(reader) { all.append(got(chunk)) }
    return all
}

private final class Log: Sendable {
    let accepted = AdaptiveMutex<[Sent]>([])
    let refused = AdaptiveMutex<Set<String>>([])
    let received = AdaptiveMutex<[String: [Got]]>([:])
    let maxQueued = AdaptiveMutex<[String: Int]>([:])
}

@Suite struct StressTests {
    @Test(arguments: [1, 2, 3])
    func everyPromiseHoldsUnderConcurrency(seed: UInt64) throws {
        let group = try Group(name: "stress", settings: GroupSettings(capacity: 4))
        let log = Log()
        let steady = try (0..<3).map { i in
            try group.join("steady\(i)", settings: MemberSettings(capacity: 4, loopback: i == 0))
        }
        let lossy = try group.join("lossy", settings: MemberSettings(capacity: 2, dropWhenFull: true))
        let shared = try group.join("shared", settings: MemberSettings(capacity: 3))
        // Senders 0-3 send one message at a time; 4 and 5 send batches.
        let singleSenders = 4
        let senders = 6
        let perSender = 1500
        let work = DispatchGroup()
        let sendersDone = DispatchGroup()
        let stop = Atomic<Bool>(false)

        func run(_ body: @escaping @Sendable () -> Void) {
            work.enter()
            Thread.detachNewThread { body(); work.leave() }
        }

        // One reader per steady member, so each member's order is observable.
        for member in steady + [lossy] {
            let reader = member.makeReader()
            run {
                let got = drain(reader)
                log.received.withLock { $0[member.name] = got }
            }
        }
        // Two readers sharing one member's queue.
        for index in 0..<2 {
            let reader = shared.makeReader()
            run {
                let got = drain(reader)
                log.received.withLock { $0["shared#\(index)"] = got }
            }
        }
        // Members that come and go.
        run {
            var generator = SeededGenerator(seed: seed &* 31)
            var round = 0
            while !stop.load(ordering: .relaxed) {
                let name = "churn\(round)"
                round += 1
                guard let member = try? group.join(name) else { break }
                let reader = member.makeReader()
                var all: [Got] = []
                for _ in 0..<Int.random(in: 1...20, using: &generator) {
                    guard let chunk = try? reader.tryReceive(maxBytes: 1 << 20) else { continue }
                    all.append(got(chunk))
                }
                member.leave()
                all += drain(reader)
                log.received.withLock { $0[name] = all }
            }
        }
        // Settings that change under load; and a watcher of the bounds.
        run {
            var generator = SeededGenerator(seed: seed &* 7)
            while !stop.load(ordering: .relaxed) {
                let capacity = Int.random(in: 2...6, using: &generator)
                do {
                    try group.configureMember(named: "steady2") { $0.capacity = capacity }
                } catch {
                    // Only once the test has made everyone leave.
                    #expect((error as? DeliveryError) == .noSuchMember && stop.load(ordering: .relaxed))
                    break
                }
                for member in group.snapshot().members {
                    log.maxQueued.withLock { $0[member.name] = max($0[member.name] ?? 0, member.queued) }
                }
            }
        }
        for sender in singleSenders..<senders {
            sendersDone.enter()
            run {
                var generator = SeededGenerator(seed: seed &+ UInt64(sender) &* 1_000_003)
                sendBatches(sender: sender, perSender: perSender, group: group, log: log, using: &generator)
                sendersDone.leave()
            }
        }
        for sender in 0..<singleSenders {
            sendersDone.enter()
            let asMember: Member? = sender < 2 ? steady[sender] : nil
            run {
                var generator = SeededGenerator(seed: seed &+ UInt64(sender) &* 1_000_003)
                for counter in 0..<perSender {
                    let message = payload(sender: sender, counter: counter)
                    let text = "\(sender):\(counter)"
                    if Bool.random(using: &generator) {
                        do {
                            let receipt = try group.trySend(message, as: asMember)
                            log.accepted.withLock { $0.append(Sent(sender: sender, counter: counter, sequence: receipt.sequence)) }
                        } catch {
                            #expect((error as? DeliveryError) == .wouldBlock)
                            log.refused.withLock { _ = $0.insert(text) }
                        }
                        continue
                    }
                    let semaphore = DispatchSemaphore(value: 0)
                    let outcome = AdaptiveMutex<Result<SendReceipt, DeliveryError>?>(nil)
                    let waiting = group.send(message, as: asMember, .blocking) { result in
                        outcome.withLock { $0 = result }
                        semaphore.signal()
                    }
                    if let waiting, Int.random(in: 0..<4, using: &generator) == 0, waiting.cancel() {
                        log.refused.withLock { _ = $0.insert(text) }
                        continue
                    }
                    semaphore.wait()
                    let receipt = try! outcome.withLock { $0! }.get()
                    log.accepted.withLock { $0.append(Sent(sender: sender, counter: counter, sequence: receipt.sequence)) }
                }
                sendersDone.leave()
            }
        }

        sendersDone.wait()
        stop.store(true, ordering: .relaxed)
        for member in steady + [lossy, shared] { member.leave() }
        #expect(work.wait(timeout: .now() + 60) == .success)

        try check(log: log, group: group, senders: senders, perSender: perSender)
    }

    /// Batches of 1 to 8 messages, non-blocking or blocking (and sometimes
    /// cancelled); a short send sends the rest again, as a front end's client
    /// would; what was refused or cancelled is not sent again.
    private func sendBatches(
        sender: Int, perSender: Int, group: Group, log: Log, using generator: inout SeededGenerator
    ) {
        var counter = 0
        while counter < perSender {
            let size = min(Int.random(in: 1...8, using: &generator), perSender - counter)
            var pending = Array(counter..<(counter + size))
            counter += size
            while !pending.isEmpty {
                let messages = pending.map { payload(sender: sender, counter: $0) }
                let outcome: Result<BatchReceipt, DeliveryError>
                if Bool.random(using: &generator) {
                    do throws(DeliveryError) {
                        outcome = .success(try group.trySend(batch: messages))
                    } catch {
                        outcome = .failure(error)
                    }
                } else {
                    let semaphore = DispatchSemaphore(value: 0)
                    let result = AdaptiveMutex<Result<BatchReceipt, DeliveryError>?>(nil)
                    let waiting = group.send(batch: messages, .blocking) { done in
                        result.withLock { $0 = done }
                        semaphore.signal()
                    }
                    if let waiting, Int.random(in: 0..<4, using: &generator) == 0, waiting.cancel() {
                        outcome = .failure(.cancelled)
                    } else {
                        semaphore.wait()
                        outcome = result.withLock { $0! }
                    }
                }
                switch outcome {
                case .success(let receipt):
                    #expect(receipt.delivered >= 1 && receipt.delivered <= pending.count)
                    let delivered = pending.prefix(receipt.delivered).enumerated().map { offset, counter in
                        Sent(sender: sender, counter: counter, sequence: receipt.firstSequence + UInt64(offset))
                    }
                    log.accepted.withLock { $0 += delivered }
                    pending.removeFirst(receipt.delivered)
                case .failure(let error):
                    #expect(error == .wouldBlock || error == .cancelled)
                    log.refused.withLock { $0.formUnion(pending.map { "\(sender):\($0)" }) }
                    pending = []
                }
            }
        }
    }

    private func check(log: Log, group: Group, senders: Int, perSender: Int) throws {
        let accepted = log.accepted.withLock { $0 }
        let refused = log.refused.withLock { $0 }
        let received = log.received.withLock { $0 }
        #expect(accepted.count + refused.count == senders * perSender)
        #expect(group.snapshot().sent == UInt64(accepted.count))
        #expect(group.snapshot().blockedWriters == 0)
        let sequenceOf = Dictionary(uniqueKeysWithValues: accepted.map { ("\($0.sender):\($0.counter)", $0.sequence) })
        let allSequences = accepted.map(\.sequence).sorted()
        #expect(Set(allSequences).count == allSequences.count)

        // One sender's messages are accepted in the order it sent them.
        for sender in 0..<senders {
            let mine = accepted.filter { $0.sender == sender }.sorted { $0.counter < $1.counter }
            #expect(mine.map(\.sequence) == mine.map(\.sequence).sorted())
        }
        for (name, got) in received {
            // Every chunk is a message that was accepted, with its sequence.
            for (sequence, text, _) in got {
                #expect(!refused.contains(text), "\(name) got refused message \(text)")
                #expect(sequenceOf[text] == sequence, "\(name) got \(text) with a wrong sequence")
            }
            // Each member (one reader) sees increasing sequences: so any two
            // members see their common messages in the same order.
            if !name.hasPrefix("shared#") {
                #expect(got.map(\.0) == got.map(\.0).sorted(), "\(name) out of order")
                #expect(Set(got.map(\.0)).count == got.count, "\(name) got duplicates")
            }
        }
        // Steady members got everything, except their own sends: senders 0 and
        // 1 send as steady0 (which has loopback) and steady1.
        for index in 0..<3 {
            let expected = accepted.filter { index != 1 || $0.sender != 1 }.map(\.sequence).sorted()
            expectSame(received["steady\(index)"]!.map(\.0), expected, "steady\(index)")
        }
        // Two readers of one member: every message exactly once between them.
        let sharedGot = (received["shared#0"]! + received["shared#1"]!).map(\.0).sorted()
        expectSame(sharedGot, allSequences, "shared")
        // The drop-when-full member: every accepted message reached it or was
        // dropped, and each message it got says how many it missed since the
        // one before.
        let lossyGot = received["lossy"]!
        #expect(lossyGot.count > 0)
        var next = allSequences.startIndex
        for (sequence, _, dropped) in lossyGot {
            var missed = 0
            while next < allSequences.endIndex && allSequences[next] < sequence {
                missed += 1
                next += 1
            }
            next += 1
            if Int(dropped) != missed {
                Issue.record("lossy: \(dropped) drops reported before \(sequence), \(missed) missed")
                break
            }
        }
        // (Its final count is read before it left: `lossy` left after all sends.)
        // Churn members: present for an interval, non-drop, so they got every
        // accepted message between their first and last, none missing.
        for (name, got) in received where name.hasPrefix("churn") && !got.isEmpty {
            let window = allSequences.filter { $0 >= got.first!.0 && $0 <= got.last!.0 }
            expectSame(got.map(\.0), window, name)
        }
        // Queue bounds: the capacity of steady2 moved within 2...6.
        let maxQueued = log.maxQueued.withLock { $0 }
        #expect((maxQueued["steady0"] ?? 0) <= 4 && (maxQueued["steady2"] ?? 0) <= 6)
        #expect((maxQueued["lossy"] ?? 0) <= 2 && (maxQueued["shared"] ?? 0) <= 3)
    }

    @Test func droppedCountMatchesWhatWasMissed() throws {
        let group = try Group(name: "drops")
        let lossy = try group.join("lossy", settings: MemberSettings(capacity: 2, dropWhenFull: true))
        let reader = lossy.makeReader()
        let total = 20_000
        let received = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while let _ = receiveWaiting(reader) { received.add(1, ordering: .relaxed) }
            done.signal()
        }
        for i in 0..<total { try group.trySend(Message(Array("\(i)".utf8))) }
        let dropped = group.snapshot().members[0].dropped
        lossy.leave()
        done.wait()
        #expect(UInt64(received.load(ordering: .relaxed)) + dropped == UInt64(total))
    }

    @Test func blockedSendsCompleteInTheOrderTheyBegan() throws {
        // Senders park one at a time (each waits until the previous is parked),
        // then one reader drains: completions must come in parking order.
        let group = try Group(name: "fifo")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        try group.trySend(Message([0]))
        let order = AdaptiveMutex<[Int]>([])
        let all = DispatchGroup()
        for i in 1...50 {
            all.enter()
            let parked = group.send(Message([UInt8(i)]), .blocking) { _ in
                order.withLock { $0.append(i) }
                all.leave()
            }
            #expect(parked != nil)
        }
        let reader = slow.makeReader()
        Thread.detachNewThread { while let _ = receiveWaiting(reader) {} }
        #expect(all.wait(timeout: .now() + 10) == .success)
        #expect(order.withLock { $0 } == Array(1...50))
        slow.leave()
    }
}

/// Compares sequence lists, reporting only the first difference.
private func expectSame(_ got: [UInt64], _ expected: [UInt64], _ name: String) {
    guard got != expected else { return }
    let index = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, expected.count)
    let near = { (list: [UInt64]) in Array(list[max(0, index - 2)..<min(list.count, index + 3)]) }
    Issue.record("\(name): got \(got.count) messages, expected \(expected.count); first difference at \(index): got \(near(got)), expected \(near(expected))")
}


import class Foundation.Thread
