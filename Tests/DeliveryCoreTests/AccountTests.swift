@testable import DeliveryCore
import Dispatch
import Locking
import Synchronization
import Testing

import class Foundation.Thread

// Accounts (Account.swift): the bytes queued in members of many groups
// against one limit; a member is full while its account is at its limit.

private func bytes(_ count: Int, _ fill: UInt8 = 0x61) -> Message { Message([UInt8](repeating: fill, count: count)) }

@Suite struct AccountTests {
    @Test func membersOfOneAccountInTwoGroupsShareItsLimit() throws {
        let account = Account(limit: 10)
        let g1 = try Group(name: "g1"), g2 = try Group(name: "g2")
        let a = try g1.join("a", account: account), b = try g2.join("b", account: account)
        try g1.trySend(bytes(10))
        #expect(account.queuedBytes == 10)
        // b's own queue is empty; its account is at its limit.
        #expect(expectError(.wouldBlock) { try g2.trySend(bytes(1)) })
        #expect(g2.snapshot().members[0].full)
        #expect(expectError(.wouldBlock) { try g1.trySend(bytes(1)) })
        #expect(try a.makeReader().text() == String(repeating: "a", count: 10))
        #expect(account.queuedBytes == 0)
        try g2.trySend(bytes(3))
        #expect(account.queuedBytes == 3)
        #expect(try b.makeReader().text() == "aaa")
        #expect(account.queuedBytes == 0)
    }

    @Test func belowItsLimitAMemberTakesOneMoreMessageWhole() throws {
        let account = Account(limit: 25)
        let group = try Group(name: "g")
        _ = try group.join("m", account: account)
        // 0, 10 and 20 are below 25: three whole messages, 30 bytes; then full.
        let receipt = try group.trySend(batch: (0..<5).map { _ in bytes(10) })
        #expect(receipt.delivered == 3)
        #expect(account.queuedBytes == 30)
        // A message larger than the limit goes once the account is below it.
        let other = Account(limit: 5)
        let g2 = try Group(name: "g2")
        _ = try g2.join("m", account: other)
        try g2.trySend(bytes(100))
        #expect(other.queuedBytes == 100)
    }

    @Test func aDropWhenFullMemberMissesWhatItsAccountHasNoRoomFor() throws {
        let account = Account(limit: 4)
        let g1 = try Group(name: "g1"), g2 = try Group(name: "g2")
        _ = try g1.join("hog", account: account)
        let lossy = try g2.join("lossy", settings: MemberSettings(dropWhenFull: true), account: account)
        let steady = try g2.join("steady")
        try g1.trySend(bytes(4))
        let receipt = try g2.trySend(bytes(2))
        #expect(receipt.recipients == 1 && receipt.dropped == 1)
        #expect(g2.snapshot().members.map(\.dropped) == [1, 0])
        _ = lossy
        #expect(try steady.makeReader().text() == "aa")
    }

    @Test func aReadInOneGroupWakesASendHeldBackInAnother() throws {
        let account = Account(limit: 8)
        let g1 = try Group(name: "g1"), g2 = try Group(name: "g2")
        let hog = try g1.join("hog", account: account)
        let quiet = try g2.join("quiet", account: account)
        try g1.trySend(bytes(8))
        let done = Box<SendReceipt>()
        let parked = g2.send(bytes(2, 0x62), .blocking) { done.append(try! $0.get()) }
        #expect(parked != nil && done.values.isEmpty)
        #expect(g2.snapshot().blockedWriters == 1)
        // A poll watch on g2's writers is woken too.
        let woken = Atomic<Int>(0)
        let readiness = g2.poll(reader: nil, writer: .anonymous, watch: Watch(id: 7) { woken.add(1, ordering: .relaxed) })
        #expect(!readiness.writable)
        // The read in g1 runs g2's wake-up after g1's lock is released, on
        // this thread: done when it returns.
        #expect(try hog.makeReader().text() != nil)
        #expect(done.values.map(\.recipients) == [1])
        #expect(woken.load(ordering: .relaxed) == 1)
        #expect(try quiet.makeReader().text() == "bb")
    }

    @Test func aPrivateSendHeldBackByTheAccountIsWokenToo() throws {
        let account = Account(limit: 4)
        let g1 = try Group(name: "g1"), g2 = try Group(name: "g2")
        let hog = try g1.join("hog", account: account)
        let target = try g2.join("target", account: account)
        try g1.trySend(bytes(4))
        let done = Box<SendReceipt>()
        #expect(g2.sendPrivate(bytes(1, 0x70), to: target, .blocking) { done.append(try! $0.get()) } != nil)
        #expect(done.values.isEmpty)
        #expect(try hog.makeReader().text() != nil)
        #expect(done.values.count == 1)
        #expect(try target.makeReader().text() == "p")
    }

    @Test func aPeerQueueChargesTheMembersAccount() throws {
        let account = Account(limit: 100)
        let group = try Group(name: "g")
        let talker = try group.join("talker", settings: MemberSettings(sendToPeer: true), account: account)
        try talker.trySend(bytes(6))
        #expect(account.queuedBytes == 6)
        #expect(try talker.makePeerReader().text() == "aaaaaa")
        #expect(account.queuedBytes == 0)
    }

    /// Members that never leave hold their account, which holds their group:
    /// shutting the group down breaks that cycle, so the group can go.
    @Test func aShutDownGroupIsLetGoByItsMembersAccounts() throws {
        let account = Account(limit: 100)
        weak var freed: Group?
        do {
            let group = try Group(name: "g")
            freed = group
            var a: Member? = try group.join("a", account: account)
            _ = try group.join("b", account: account)
            #expect(account.registeredGroups == 1)
            group.shutDown()
            #expect(account.registeredGroups == 0)
            a!.leave()  // after the shutdown: nothing left to unregister
            #expect(account.registeredGroups == 0)
            a = nil
        }
        // A Bool: a failed #expect on the group itself would reflect its fields (a noncopyable mutex).
        let groupIsGone = freed == nil
        #expect(groupIsGone)
    }

    @Test func whatAMemberThatLeftStillHoldsIsChargedUntilItIsGone() throws {
        let account = Account(limit: 5)
        let g1 = try Group(name: "g1"), g2 = try Group(name: "g2")
        var gone: Member? = try g1.join("gone", account: account)
        _ = try g2.join("waiting", account: account)
        try g1.trySend(bytes(5))
        #expect(account.registeredGroups == 2)
        gone!.leave()
        #expect(account.registeredGroups == 1)
        let done = Box<SendReceipt>()
        #expect(g2.send(bytes(1), .blocking) { done.append(try! $0.get()) } != nil)
        // Still readable after leaving, so still charged.
        #expect(account.queuedBytes == 5 && done.values.isEmpty)
        gone = nil
        #expect(account.queuedBytes == 1)
        #expect(done.values.count == 1)
    }

    @Test func putBackChargesAgain() throws {
        let account = Account(limit: 100)
        let group = try Group(name: "g")
        let member = try group.join("m", account: account)
        try group.trySend(bytes(7))
        let reader = member.makeReader()
        let chunk = try #require(try reader.tryReceive(maxBytes: 100))
        #expect(account.queuedBytes == 0)
        reader.putBack(chunk)
        #expect(account.queuedBytes == 7)
    }

    /// Writers blocked in many groups, each group with one member of the same
    /// small account, and one reader per group on its own thread: every
    /// write completes (no lost wake-up across groups), every message
    /// arrives in order, and the account never passes its limit by more than
    /// one message per group.
    @Test(.timeLimit(.minutes(1))) func blockedWritersAcrossGroupsAllComplete() throws {
        let groups = 6, perGroup = 3000, size = 16
        let account = Account(limit: 64)
        let peak = Atomic<Int>(0)
        let work = DispatchGroup()
        let failures = Atomic<Int>(0)
        for index in 0..<groups {
            let group = try Group(name: "g\(index)", settings: GroupSettings(capacity: 1000))
            let reader = try group.join("m", account: account).makeReader()
            work.enter()
            Thread.detachNewThread {
                var next = 0
                while next < perGroup {
                    let got = nextBytes(reader)
                    guard let got, got.count == size, got[0] == UInt8(next & 0xff) else {
                        Issue.record("group \(index), message \(next): got \(got.map { "\($0.count) bytes, first \($0.first ?? 0)" } ?? "the end")")
                        failures.add(1, ordering: .relaxed)
                        break
                    }
                    next += 1
                }
                work.leave()
            }
            work.enter()
            Thread.detachNewThread {
                for i in 0..<perGroup {
                    let sent = DispatchSemaphore(value: 0)
                    group.send(bytes(size, UInt8(i & 0xff)), .blocking) { result in
                        if case .failure = result { failures.add(1, ordering: .relaxed) }
                        sent.signal()
                    }
                    sent.wait()
                    let now = account.queuedBytes
                    var seen = peak.load(ordering: .relaxed)
                    while now > seen, !peak.compareExchange(expected: seen, desired: now, ordering: .relaxed).exchanged {
                        seen = peak.load(ordering: .relaxed)
                    }
                }
                work.leave()
            }
        }
        #expect(work.wait(timeout: .now() + 20) == .success)
        #expect(failures.load(ordering: .relaxed) == 0)
        #expect(account.queuedBytes == 0)
        #expect(peak.load(ordering: .relaxed) < 64 + groups * size)
    }
}

/// The next message's bytes, waiting for it; nil at the end of the stream.
private func nextBytes(_ reader: Reader) -> [UInt8]? {
    let done = DispatchSemaphore(value: 0)
    let box = Box<[UInt8]?>()
    reader.receive(maxBytes: 1 << 20, .blocking) { result in
        let chunk: MessageChunk? = (try? result.get()) ?? nil
        box.append(chunk.map { Array($0.bytes) })
        done.signal()
    }
    done.wait()
    return box.values[0]
}
