@testable import DeliveryCore
import Testing

// GroupState decides under the group's lock and returns what must follow as
// actions, carried out once the lock is released. These tests read the
// decisions themselves, with no lock and no threads.

private func text(_ chunk: MessageChunk) -> String { String(decoding: chunk.bytes, as: UTF8.self) }

/// The actions in a form a test can compare: which waiter, and what it gets.
private func describe(_ actions: [Action]) -> [String] {
    actions.map { action in
        switch action {
        case .completeReceive(let receive, .success(let received)):
            "receive \(receive.id): " + (received.isEndOfStream ? "end" : received.map(text).joined(separator: ","))
        case .completeReceive(let receive, .failure(let error)):
            "receive \(receive.id): \(error)"
        case .completeSend(let send, .success(let receipt)):
            "send \(send.id): " + (receipt.delivered == 1 ? "" : "\(receipt.delivered) from ")
                + "sequence \(receipt.firstSequence) to \(receipt.recipients)"
        case .completeSend(let send, .failure(let error)):
            "send \(send.id): \(error)"
        case .notify(let watches):
            "notify \(watches.keys.sorted())"
        case .wake:
            "wake"
        }
    }
}

private let never: @Sendable (Result<Received, DeliveryError>) -> Void = { _ in Issue.record("a completion ran") }
private let neverSent: @Sendable (Result<SendReceipt, DeliveryError>) -> Void = { _ in Issue.record("a completion ran") }

@Suite struct GroupStateTests {
    @Test func theFastPathDecidesNothingElse() throws {
        var state = GroupState(settings: GroupSettings())
        let member = try state.join("m", settings: nil).get()
        var actions: [Action] = []
        let receipt = try #require(state.send(message("x"), from: nil, actions: &actions)).get()
        #expect(receipt.recipients == 1)
        let received = try #require(state.receive(ReaderState(member: member), limit: .one(maxBytes: 10), actions: &actions))
        #expect(received.map(text) == ["x"])
        #expect(actions.isEmpty)
    }

    @Test func aSendHandsItsMessageToAParkedReceive() throws {
        var state = GroupState(settings: GroupSettings())
        let member = try state.join("m", settings: nil).get()
        let reader = ReaderState(member: member)
        var actions: [Action] = []
        #expect(state.receive(reader, limit: .one(maxBytes: 3), actions: &actions) == nil)
        let id = try state.park(reader, limit: .one(maxBytes: 3), completion: never).get()
        let receipt = try #require(state.send(message("hello"), from: nil, actions: &actions)).get()
        // Split to the parked receive's buffer; the rest stays with its reader.
        #expect(describe(actions) == ["receive \(id): hel"])
        #expect(receipt.recipients == 1 && member.queue.isEmpty && member.parkedReceives.isEmpty)
        #expect(reader.remainder.map(text) == "lo")
    }

    @Test func aReaderDrainingCompletesTheParkedSendAndWakesWriters() throws {
        var state = GroupState(settings: GroupSettings())
        let member = try state.join("slow", settings: MemberSettings(capacity: 1)).get()
        let reader = ReaderState(member: member)
        var actions: [Action] = []
        _ = try #require(state.send(message("0"), from: nil, actions: &actions)).get()
        #expect(state.send(message("1"), from: nil, actions: &actions) == nil)
        let id = state.park(message("1"), from: nil, completion: neverSent)
        state.writeWatches[7] = {}
        #expect(actions.isEmpty)

        let received = try #require(state.receive(reader, limit: .one(maxBytes: 10), actions: &actions))
        #expect(received.map(text) == ["0"])
        #expect(describe(actions) == ["send \(id): sequence 2 to 1", "notify [7]"])
        #expect(state.parkedSends.isEmpty && state.writeWatches.isEmpty)
        #expect(member.queue.map(\.bytes) == [Array("1".utf8)])
    }

    @Test func leavingEndsParkedReceivesAndWakesReaders() throws {
        var state = GroupState(settings: GroupSettings())
        let member = try state.join("m", settings: nil).get()
        var actions: [Action] = []
        let first = try state.park(ReaderState(member: member), limit: .one(maxBytes: 10), completion: never).get()
        let second = try state.park(ReaderState(member: member), limit: .batch(maxMessages: 8, maxBytes: 100), completion: never).get()
        member.readWatches[3] = {}
        state.leave(member, actions: &actions)
        #expect(describe(actions) == ["receive \(first): end", "receive \(second): end", "notify [3]"])
        #expect(state.members.isEmpty && state.membersByName.isEmpty && !member.present)

        actions = []
        state.leave(member, actions: &actions)
        #expect(actions.isEmpty)
    }

    @Test func shutDownFailsEveryWaiterAndWakesEveryWatch() throws {
        var state = GroupState(settings: GroupSettings())
        let full = try state.join("full", settings: MemberSettings(capacity: 1)).get()
        let idle = try state.join("idle", settings: MemberSettings(capacity: 1)).get()
        var actions: [Action] = []
        _ = try #require(state.send(message("0"), from: idle, actions: &actions)).get()
        #expect(state.send(message("1"), from: nil, actions: &actions) == nil)
        let send = state.park(message("1"), from: nil, completion: neverSent)
        let receive = try state.park(ReaderState(member: idle), limit: .one(maxBytes: 10), completion: never).get()
        idle.readWatches[1] = {}
        state.writeWatches[2] = {}

        state.shutDown(actions: &actions)
        #expect(describe(actions) == ["send \(send): shutDown", "receive \(receive): shutDown", "notify [1]", "notify [2]"])
        // From now on nothing waits; what is queued can still be read.
        actions = []
        let refused = try #require(state.send(message("2"), from: nil, actions: &actions))
        #expect(throws: DeliveryError.shutDown) { try refused.get() }
        #expect(throws: DeliveryError.shutDown) {
            try state.park(ReaderState(member: idle), limit: .one(maxBytes: 10), completion: never).get()
        }
        let queued = try #require(state.receive(ReaderState(member: full), limit: .one(maxBytes: 10), actions: &actions))
        #expect(queued.map(text) == ["0"])
        #expect(actions.isEmpty)
    }
}

@Suite struct BatchStateTests {
    @Test func aParkedBatchCompletesWithTheCountThatFitAtTheHead() throws {
        var state = GroupState(settings: GroupSettings())
        let member = try state.join("slow", settings: MemberSettings(capacity: 2)).get()
        let reader = ReaderState(member: member)
        var actions: [Action] = []
        let full = try #require(state.send(batch: [message("0"), message("1"), message("2")], from: nil, actions: &actions)).get()
        #expect(full.delivered == 2 && full.firstSequence == 1)
        let batch = [message("a"), message("b"), message("c")]
        #expect(state.send(batch: batch, from: nil, actions: &actions) == nil)
        let id = state.park(batch: batch, from: nil, completion: { _ in Issue.record("a completion ran") })
        #expect(actions.isEmpty)

        _ = state.receive(reader, limit: .one(maxBytes: 10), actions: &actions)
        #expect(describe(actions) == ["send \(id): sequence 3 to 1"])
        actions = []
        _ = state.receive(reader, limit: .batch(maxMessages: 2, maxBytes: 10), actions: &actions)
        #expect(actions.isEmpty && state.parkedSends.isEmpty)
        #expect(member.queue.isEmpty)
    }

    @Test func aParkedBatchOfSeveralReportsItsCount() throws {
        var state = GroupState(settings: GroupSettings())
        let member = try state.join("slow", settings: MemberSettings(capacity: 3)).get()
        var actions: [Action] = []
        _ = state.send(batch: [message("0"), message("1"), message("2")], from: nil, actions: &actions)
        let batch = [message("a"), message("b"), message("c"), message("d")]
        let id = state.park(batch: batch, from: nil, completion: { _ in Issue.record("a completion ran") })
        _ = state.receive(ReaderState(member: member), limit: .batch(maxMessages: 3, maxBytes: 10), actions: &actions)
        #expect(describe(actions) == ["send \(id): 3 from sequence 4 to 3"])
        #expect(member.queue.map(\.bytes) == ["a", "b", "c"].map { Array($0.utf8) })
    }
}
