@testable import Cluster
import Glibc
import Locking
import NATSTestSupport
import TestSupport
import Testing

/// The node's timer thread: every entry runs once, not before its delay and
/// not much after its slack, an earlier entry added while the thread sleeps
/// until a later one is not held back, and a cancelled one never runs.
@Suite struct TimersTests {
    @Test func everyEntryRunsOnceBetweenItsDeadlineAndItsSlack() {
        let timers = Timers()
        defer { timers.stop() }
        let ran = Recorder<(Int, Duration)>()
        let planned = AdaptiveMutex<[Int: (Duration, Duration)]>([:])
        let start = monotonicNow()
        let threads = (0..<4).map { t in
            NATSTestSupport.startThread {
                var rng = SeededGenerator(seed: UInt64(t + 1))
                for k in 0..<50 {
                    let id = t * 100 + k
                    let delay = Duration.milliseconds(Int.random(in: 0...50, using: &rng))
                    let slack = Duration.milliseconds(Int.random(in: 0...20, using: &rng))
                    let at = monotonicNow()
                    planned.withLock { $0[id] = (at - start + delay, at - start + delay + slack) }
                    timers.after(delay, slack: slack) { ran.append((id, monotonicNow() - start)) }
                    usleep(UInt32.random(in: 0...2000, using: &rng))
                }
            }
        }
        for t in threads { pthread_join(t, nil) }
        #expect(ran.wait(timeout: .seconds(5)) { $0.count == 200 })
        usleep(100_000)
        #expect(ran.all.count == 200)
        #expect(Set(ran.all.map(\.0)).count == 200)
        var late: [Duration] = []
        for (id, at) in ran.all {
            let (deadline, latest) = planned.withLock { $0[id]! }
            #expect(at >= deadline, "entry \(id) ran at \(at), before its deadline \(deadline)")
            late.append(at - latest)
        }
        // A loaded machine may run a thread late; a lost wake-up would be
        // seconds (the thread's idle sleep) late.
        #expect(late.max()! < .milliseconds(500), "the latest entry ran \(late.max()!) after its slack")
    }

    @Test func anEarlierEntryWakesAThreadSleepingUntilALaterOne() {
        let timers = Timers()
        defer { timers.stop() }
        let ran = Recorder<String>()
        timers.after(.seconds(3)) { ran.append("late") }
        usleep(50_000)  // asleep until the late one now
        let start = monotonicNow()
        timers.after(.milliseconds(10)) { ran.append("early") }
        #expect(ran.wait(timeout: .seconds(2)) { $0.contains("early") })
        #expect(monotonicNow() - start < .milliseconds(500))
        #expect(ran.all == ["early"])
    }

    @Test func aCancelledEntryNeverRuns() {
        let timers = Timers()
        defer { timers.stop() }
        let ran = Recorder<Int>()
        let cancelled = timers.after(.milliseconds(30)) { ran.append(1) }
        timers.after(.milliseconds(60)) { ran.append(2) }
        timers.cancel(cancelled)
        #expect(ran.wait(timeout: .seconds(2)) { $0.contains(2) })
        usleep(50_000)
        #expect(ran.all == [2])
    }
}
