import Glibc
import SystemPackage
import MulticastFS
import Testing

// G/ctl's words are bytes, as names are (docs/contract.md, "`G/ctl`"): a
// space or `=` followed by a combining mark still separates. Found by the
// ctl fuzzer (fuzz/corpus/ctl/combining-name): splitting the String split by
// Character, and " \u{301}" is one Character that is not " ".
@Suite struct ControlWordsTests {
    @Test func aMemberWhoseNameBeginsWithACombiningMarkCanBeConfigured() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        _ = try kernel.create("/g/\u{301}x")
        let ctl = try kernel.open("/g/ctl", O_WRONLY)
        let command = "member \u{301}x capacity=2"
        #expect(kernel.write(ctl, command).outcome == .written(command.utf8.count))
        #expect(try kernel.readAll("/g/status").contains("member \u{301}x queued=0 queued_bytes=0 capacity=2 "))
    }

    @Test func aPatternMayBeginWithACombiningMark() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        _ = try kernel.create("/g/m")
        let ctl = try kernel.open("/g/ctl", O_WRONLY)
        for command in ["member m subscribe=\u{301}a", "member m subscribe=a,\u{301}b"] {
            #expect(kernel.write(ctl, command).outcome == .written(command.utf8.count), "\(command.debugDescription)")
        }
        #expect(try kernel.readAll("/g/status").contains(" subscribe=a,\u{301}b\n"))
    }

    @Test func theWordsAreSplitOnlyAtSpaces() throws {
        #expect(try ControlCommand(parsing: Array("member \u{301}x loopback=1".utf8)) == .member(name: "\u{301}x", [.loopback(true)]))
        // A space followed by a combining mark separates; the mark begins the next word.
        #expect(throws: Errno.invalidArgument) { try ControlCommand(parsing: Array("set \u{301}capacity=1".utf8)) }
    }
}
