import Glibc
import Dispatch
import Synchronization
import Testing

@testable import FUSELowLevel

@Suite struct SessionGateTests {
    @Test func openGateRunsAndClosedGateRefuses() {
        let gate = SessionGate()
        #expect(gate.isOpen)
        #expect(gate.ifOpen { 5 } == 5)
        gate.close()
        gate.close()  // idempotent
        #expect(!gate.isOpen)
        #expect(gate.ifOpen { 5 } == nil)
    }

    @Test func closeWaitsForCallersInside() {
        let gate = SessionGate()
        let inside = Atomic<Bool>(false)
        let release = Atomic<Bool>(false)
        let finished = Atomic<Bool>(false)
        spawnDetachedThread {
            _ = gate.ifOpen {
                inside.store(true, ordering: .releasing)
                while !release.load(ordering: .acquiring) { usleep(1000) }
                finished.store(true, ordering: .releasing)
            }
        }
        while !inside.load(ordering: .acquiring) { usleep(1000) }
        spawnDetachedThread {
            usleep(50_000)
            release.store(true, ordering: .releasing)
        }
        gate.close()
        let done = finished.load(ordering: .acquiring)
        #expect(done)
    }
}
