import Glibc
import Locking
import NATSTestSupport

/// A TCP relay on loopback between a node and its server, which a test can
/// cut (every connection through it closed, new ones refused) and restore:
/// one node loses its server while the others keep theirs.
final class TCPProxy: @unchecked Sendable {
    let port: Int
    private let target: Int
    private let listener: Int32
    private let state = AdaptiveMutex<(cut: Bool, sockets: [Int32], closed: Bool)>((false, [], false))

    var url: String { "nats://127.0.0.1:\(port)" }

    init(to url: String) {
        target = Int(url.split(separator: ":").last!)!
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
                precondition(bind(fd, sp, len) == 0 && getsockname(fd, sp, &len) == 0)
            }
        }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        listen(fd, 16)
        let listener = fd
        startDetachedThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                if client < 0 { return }
                let (cut, closed) = state.withLock { ($0.cut, $0.closed) }
                if closed { Glibc.close(client); return }
                if cut { Glibc.close(client); continue }
                relay(client)
            }
        }
    }

    deinit {
        state.withLock { $0.closed = true }
        cut()
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
    }

    private func relay(_ client: Int32) {
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = loopback(target)
        let connected = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            Glibc.close(client)
            Glibc.close(server)
            return
        }
        state.withLock { $0.sockets += [client, server] }
        // The second pump to stop closes both descriptors: neither is
        // closed while the other pump may still use it.
        let running = AdaptiveMutex(2)
        for (from, to) in [(client, server), (server, client)] {
            startDetachedThread {
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = read(from, &buffer, buffer.count)
                    if n <= 0 || write(to, buffer, n) != n { break }
                }
                shutdown(from, Int32(SHUT_RDWR))
                shutdown(to, Int32(SHUT_RDWR))
                let last = running.withLock { n -> Bool in
                    n -= 1
                    return n == 0
                }
                if last {
                    self.forget([client, server])
                    Glibc.close(client)
                    Glibc.close(server)
                }
            }
        }
    }

    private func forget(_ fds: [Int32]) {
        state.withLock { s in s.sockets.removeAll { fds.contains($0) } }
    }

    /// Ends every connection through the proxy and refuses new ones.
    func cut() {
        // Shut down under the lock, not closed: their pumps close them, and
        // a descriptor still listed here is still open.
        state.withLock { s in
            s.cut = true
            for fd in s.sockets { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    func restore() {
        state.withLock { $0.cut = false }
    }
}

private func loopback(_ port: Int) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    return addr
}
