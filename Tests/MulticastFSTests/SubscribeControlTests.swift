import Glibc
import MulticastFS
import Testing

// `member NAME subscribe=...` through G/ctl, and `subscribe=` in G/status,
// through the in-memory driver (docs/contract.md, "Topic filters").

@Suite struct SubscribeControlTests {
    @Test func subscribeFiltersWhatAMemberReceives() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        let eu = try kernel.create("/g/eu"), all = try kernel.create("/g/all")
        let ctl = try kernel.open("/g/ctl", O_WRONLY), send = try kernel.open("/g/send", O_WRONLY)
        let command = "member eu subscribe=orders.eu.>,alerts\n"
        #expect(kernel.write(ctl, command).outcome == .written(command.utf8.count))
        for text in ["orders.eu.new 1", "orders.us.new 2", "alerts 3", "alerts.x 4"] { _ = kernel.write(send, text) }
        #expect(kernel.read(eu, nonBlocking: true).text == "orders.eu.new 1")
        #expect(kernel.read(eu, nonBlocking: true).text == "alerts 3")
        #expect(kernel.read(eu, nonBlocking: true).outcome == .error(EAGAIN))
        for expected in ["orders.eu.new 1", "orders.us.new 2", "alerts 3", "alerts.x 4"] {
            #expect(kernel.read(all, nonBlocking: true).text == expected)
        }
        let status = try kernel.readAll("/g/status")
        #expect(status.contains("member eu queued=0 "))
        #expect(status.contains(" peer_full=0 subscribe=orders.eu.>,alerts\n"))
        #expect(status.contains("member all queued=0 queued_bytes=0 capacity=256 queue_bytes=4194304 loopback=0 drop_when_full=0 full=0 delivered=4 dropped=0 send_to_peer=0 peer_queued=0 peer_full=0 subscribe=\n"))
        // An empty value clears the filter.
        #expect(kernel.write(ctl, "member eu subscribe=").outcome == .written(20))
        _ = kernel.write(send, "anything")
        #expect(kernel.read(eu, nonBlocking: true).text == "anything")
        #expect(try kernel.readAll("/g/status").contains(" peer_full=0 subscribe=\nmember all"))
    }

    @Test func badPatternsAreEINVALAndChangeNothing() throws {
        let kernel = try KernelDriver()
        try kernel.mkdir("/g")
        _ = try kernel.create("/g/m")
        let ctl = try kernel.open("/g/ctl", O_WRONLY)
        #expect(kernel.write(ctl, "member m subscribe=keep.*").outcome == .written(25))
        let sixtyFive = (0...64).map { "p\($0)" }.joined(separator: ",")
        for bad in ["a..b", ".a", "a.", "a.>.b", "a*", ">b", "a,,b", "a,", ",", "a\tb", sixtyFive,
                    "a subscribe=b", "a capacity=0"] {
            #expect(kernel.write(ctl, "member m subscribe=\(bad)").outcome == .error(EINVAL), "\(bad.debugDescription)")
        }
        // Only subscribe may be empty; a group has no subscribe key.
        for bad in ["member m capacity=", "set subscribe=a", "set subscribe=", "member m subscribe"] {
            #expect(kernel.write(ctl, bad).outcome == .error(EINVAL), "\(bad.debugDescription)")
        }
        #expect(try kernel.readAll("/g/status").contains(" subscribe=keep.*\n"))
        #expect(kernel.write(ctl, "member m subscribe=\((0..<64).map { "p\($0)" }.joined(separator: ","))").outcome != .error(EINVAL))
    }
}
