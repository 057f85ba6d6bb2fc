import Dispatch
import Locking
import Testing

@Suite struct AdaptiveMutexTests {
    @Test func excludesOtherThreads() {
        // A plain read-modify-write in two steps: without exclusion some
        // increments are lost between the load and the store.
        let counter = AdaptiveMutex(0)
        let threads = 8, rounds = 50_000
        DispatchQueue.concurrentPerform(iterations: threads) { _ in
            for _ in 0..<rounds {
                counter.withLock { value in
                    let seen = value
                    value = seen &+ 1
                }
            }
        }
        #expect(counter.withLock { $0 } == threads * rounds)
    }

    struct Refused: Error {}

    @Test func releasesTheLockWhenTheBodyThrows() {
        let mutex = AdaptiveMutex([Int]())
        #expect(throws: Refused.self) {
            try mutex.withLock { (list: inout [Int]) throws(Refused) in
                list.append(1)
                throw Refused()
            }
        }
        // Not deadlocked, and what the body did before throwing stays.
        #expect(mutex.withLock { $0 } == [1])
    }

    struct Token: ~Copyable {
        var uses = 0
    }

    @Test func guardsANoncopyableValue() {
        let mutex = AdaptiveMutex(Token())
        mutex.withLock { $0.uses += 1 }
        mutex.withLock { $0.uses += 1 }
        #expect(mutex.withLock { $0.uses } == 2)
    }
}
