import Dispatch
import Synchronization
import Testing

@testable import FUSELowLevel

private final class Token: Sendable {
    let name: String
    init(_ name: String) { self.name = name }
}

@Suite struct InterruptRegistryTests {
    @Test func idsAreUniqueAndNonZero() {
        let registry = InterruptRegistry<Token>()
        let token = Token("a")
        let ids = (0..<100).map { _ in registry.arm(token, registrant: 1) }
        #expect(Set(ids).count == 100)
        #expect(!ids.contains(0))
    }

    @Test func synchronousCallDuringRegistrationIsReentrant() {
        let registry = InterruptRegistry<Token>()
        let token = Token("a")
        let id = registry.arm(token, registrant: 7)
        guard case .reentrant = registry.interrupt(id, on: 7) else {
            Issue.record("expected reentrant")
            return
        }
        // The reentrant call changes nothing.
        #expect(registry.state(of: id)?.description == "armed")
        registry.registrationFinished(id)
        guard case .ignored = registry.interrupt(id, on: 7) else {
            Issue.record("expected ignored (no cancel yet)")
            return
        }
        #expect(registry.state(of: id)?.description == "interrupted")
    }

    @Test func otherThreadDuringRegistrationIsNotReentrant() {
        let registry = InterruptRegistry<Token>()
        let id = registry.arm(Token("a"), registrant: 7)
        _ = registry.interrupt(id, on: 8)
        #expect(registry.state(of: id)?.description == "interrupted")
    }

    @Test func unknownIdIsIgnored() {
        let registry = InterruptRegistry<Token>()
        guard case .ignored = registry.interrupt(12345, on: 1) else {
            Issue.record("expected ignored")
            return
        }
        guard case .discarded = registry.provideCancel(12345, { true }) else {
            Issue.record("expected discarded")
            return
        }
        #expect(registry.cancelFinished(12345, cancelled: true) == nil)
        registry.answered(12345)
    }

    @Test func cancelVerdictTrueNamesTheTarget() {
        let registry = InterruptRegistry<Token>()
        let token = Token("t")
        let id = registry.arm(token, registrant: 1)
        registry.registrationFinished(id)
        guard case .stored = registry.provideCancel(id, { true }) else {
            Issue.record("expected stored")
            return
        }
        guard case .runCancel(let cancel, let target) = registry.interrupt(id, on: 2) else {
            Issue.record("expected runCancel")
            return
        }
        #expect(target === token)
        #expect(registry.cancelFinished(id, cancelled: cancel()) === token)
    }

    @Test func answeredRemovesTheSlot() {
        let registry = InterruptRegistry<Token>()
        let token = Token("t")
        let id = registry.arm(token, registrant: 1)
        #expect(registry.count == 1)
        registry.answered(id)
        #expect(registry.count == 0)
        #expect(registry.state(of: id) == nil)
    }

    @Test func pendingTargetsSkipsAndRemovesDeadOnes() {
        let registry = InterruptRegistry<Token>()
        let kept = Token("kept")
        _ = registry.arm(kept, registrant: 1)
        do {
            let dropped = Token("dropped")
            _ = registry.arm(dropped, registrant: 1)
        }
        #expect(registry.count == 2)
        let pending = registry.pendingTargets()
        #expect(pending.map(\.name) == ["kept"])
        #expect(registry.count == 1)
    }

    /// A cancel that never ran is released when its request is answered.
    /// Releasing it may run user code (a deinit) that uses the table — in
    /// the daemon, a reply's deinit answering EIO — so it must happen after
    /// the table's lock is dropped. The probe's deinit asks another thread
    /// to take the lock: were it held by the releasing thread, that could
    /// not happen within the second (and taking it here would deadlock).
    @Test func cancelDroppedByTheAnswerIsReleasedOutsideTheLock() {
        /// 0: the probe is alive; 1: released with the lock free; 2: held.
        let verdict = Verdict()
        final class Verdict: Sendable { let value = Atomic<Int>(0) }
        final class Probe: Sendable {
            let registry: InterruptRegistry<Token>
            let verdict: Verdict
            init(_ registry: InterruptRegistry<Token>, _ verdict: Verdict) {
                self.registry = registry
                self.verdict = verdict
            }
            deinit {
                let done = DispatchSemaphore(value: 0)
                let registry = registry
                DispatchQueue.global().async {
                    _ = registry.count
                    done.signal()
                }
                let free = done.wait(timeout: .now() + 1) == .success
                verdict.value.store(free ? 1 : 2, ordering: .releasing)
            }
        }
        let registry = InterruptRegistry<Token>()
        let token = Token("a")
        let id = registry.arm(token, registrant: 1)
        registry.registrationFinished(id)
        do {
            let probe = Probe(registry, verdict)
            _ = registry.provideCancel(id) { [probe] in
                withExtendedLifetime(probe) { true }
            }
        }
        #expect(verdict.value.load(ordering: .acquiring) == 0)
        registry.answered(id)
        #expect(verdict.value.load(ordering: .acquiring) == 1)
        withExtendedLifetime(token) {}
    }
}
