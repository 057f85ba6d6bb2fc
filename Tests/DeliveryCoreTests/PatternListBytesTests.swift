import DeliveryCore
import Testing

// A `subscribe=` list is split at its `,` bytes (docs/contract.md, "Topic
// filters", and tests/lib/topicfilter.py): found by the patterns fuzzer
// (fuzz/corpus/patterns/unicode). Split by Character, ",\u{301}" was one
// Character, not a separator, and the list was refused as a pattern holding
// a comma.
@Suite struct PatternListBytesTests {
    @Test func aCommaFollowedByACombiningMarkSeparatesPatterns() throws {
        let subscription = try Subscription(parsing: "a,\u{301}b")
        #expect(subscription.patterns.map { Array($0.text.utf8) } == [Array("a".utf8), Array("\u{301}b".utf8)])
        #expect(subscription.matches(payload: Array("\u{301}b".utf8)))
        #expect(Array(subscription.text.utf8) == Array("a,\u{301}b".utf8))
    }

    @Test func aCombiningMarkAfterACommaStillLeavesTheEmptyPatternsRefused() {
        #expect(throws: DeliveryError.invalidSubscription(.emptyToken)) { try Subscription(parsing: "a,,\u{301}b") }
    }
}
