import Locking
import DeliveryCore
import Testing

// Edge-triggered epoll (contract: "Poll, edge-triggered"): the kernel polls a
// FUSE file again only after a notification, and asks for one on every poll
// while someone waits (fs/fuse/file.c, fuse_file_poll). So a watch given
// while the file is ready must still fire on the next change, or an EPOLLET
// poller that drained never hears of the next message.

/// Plays the kernel's part for one file under EPOLLET: it polls with a new
/// watch when added and after every notification, and reports what that
/// poll found (epoll_wait with a zero timeout).
final class EdgeTriggeredPoller: Sendable {
    private let group: Group
    private let reader: Reader?
    private let writer: Writer?
    private let id: UInt64
    /// Starts woken: EPOLL_CTL_ADD polls once.
    private let woken = AdaptiveMutex(true)

    init(_ group: Group, reader: Reader? = nil, writer: Writer? = nil, id: UInt64 = 1) {
        self.group = group
        self.reader = reader
        self.writer = writer
        self.id = id
    }

    /// The readiness the re-poll found if a notification came since the last
    /// call; nil: no notification, so an edge-triggered poller sees nothing.
    func events() -> Readiness? {
        let wasWoken = woken.withLock { woken in
            defer { woken = false }
            return woken
        }
        guard wasWoken else { return nil }
        return group.poll(reader: reader, writer: writer, watch: Watch(id: id) { [woken] in woken.withLock { $0 = true } })
    }
}

@Suite struct EdgeTriggeredPollTests {
    @Test func readWatchGivenWhileReadableFiresOnTheNextMessage() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        try group.trySend(message("queued"))
        let fired = Box<Int>()
        #expect(group.poll(reader: reader, writer: nil, watch: Watch(id: 1) { fired.append(1) }).readable)
        try group.trySend(message("next"))
        #expect(fired.values == [1])
    }

    @Test func everyMessageGivesAnEdgeToADrainingReader() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        let poller = EdgeTriggeredPoller(group, reader: reader)
        #expect(poller.events() == Readiness(readable: false, writable: false))
        for round in 1...5 {
            let count = round.isMultiple(of: 2) ? 3 : 1
            for index in 0..<count { try group.trySend(message("\(round).\(index)")) }
            #expect(poller.events()?.readable == true, "round \(round)")
            for _ in 0..<count { _ = try reader.text() }
            #expect(throws: DeliveryError.wouldBlock) { try reader.text() }
            #expect(poller.events() == nil, "round \(round): no edge without a new message")
        }
    }

    @Test func aMessageArrivingAtAReadableMemberIsANewEdge() throws {
        let group = try Group(name: "g")
        let reader = try group.join("m").makeReader()
        let poller = EdgeTriggeredPoller(group, reader: reader)
        _ = poller.events()
        for round in 1...3 {
            try group.trySend(message("first"))
            #expect(poller.events()?.readable == true, "round \(round), first")
            try group.trySend(message("second"))
            #expect(poller.events()?.readable == true, "round \(round), second, the first still queued")
            _ = try reader.text()
            _ = try reader.text()
        }
    }

    @Test func writeWatchGivenWhileWritableFiresWhenTheFullRecipientDrains() throws {
        let group = try Group(name: "g")
        let reader = try group.join("slow", settings: MemberSettings(capacity: 1)).makeReader()
        let fired = Box<Int>()
        #expect(group.poll(reader: nil, writer: .anonymous, watch: Watch(id: 1) { fired.append(1) }).writable)
        try group.trySend(message("fills it"))
        #expect(!group.poll(reader: nil, writer: .anonymous).writable)
        _ = try reader.text()
        #expect(fired.values == [1])
    }

    /// Each way a blocked-full condition clears, as seen by a writer that
    /// polled while it could still write.
    enum Clearing: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case drained, memberLeft, capacityRaised, madeDropWhenFull, parkedSendCancelled
        var testDescription: String { rawValue }
    }

    @Test(arguments: Clearing.allCases)
    func writeWatchGivenWhileWritableFiresWhenBlockedFullClears(_ clearing: Clearing) throws {
        let group = try Group(name: "g")
        let slow = try group.join("slow", settings: MemberSettings(capacity: 1))
        // The full member itself writes: only an older parked send holds it back.
        let writer: Writer = clearing == .parkedSendCancelled ? .member(slow) : .anonymous
        let poller = EdgeTriggeredPoller(group, writer: writer)
        #expect(poller.events()?.writable == true)
        try group.trySend(message("fills it"))
        var parked: Waiting?
        if clearing == .parkedSendCancelled {
            let waiting = try #require(group.send(message("parked"), .blocking) { _ in })
            parked = waiting
        }
        #expect(group.poll(reader: nil, writer: writer).writable == false)
        switch clearing {
        case .drained: _ = try slow.makeReader().text()
        case .memberLeft: slow.leave()
        case .capacityRaised: try group.configureMember(named: "slow") { $0.capacity = 2 }
        case .madeDropWhenFull: try group.configureMember(named: "slow") { $0.dropWhenFull = true }
        case .parkedSendCancelled: #expect(parked?.cancel() == true)
        }
        #expect(poller.events()?.writable == true)
    }

    @Test func everyDrainOfAFullMemberGivesAnEdgeThroughParkedSends() throws {
        let group = try Group(name: "g")
        let reader = try group.join("slow", settings: MemberSettings(capacity: 1)).makeReader()
        let poller = EdgeTriggeredPoller(group, writer: .anonymous)
        #expect(poller.events()?.writable == true)
        for round in 1...3 {
            try group.trySend(message("fills it"))
            let completed = Box<Int>()
            group.send(message("parked"), .blocking) { _ in completed.append(round) }
            #expect(poller.events() == nil, "round \(round): no room yet")
            // The parked send takes the room this makes: not writable yet.
            _ = try reader.text()
            #expect(completed.values == [round])
            #expect(poller.events()?.writable != true, "round \(round): full again")
            _ = try reader.text()
            #expect(poller.events()?.writable == true, "round \(round)")
        }
    }
}
