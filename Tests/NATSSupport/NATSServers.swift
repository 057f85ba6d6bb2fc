import Glibc
import Locking

/// nats-server processes for a test: one server, or a three-server cluster,
/// on loopback ports, with JetStream in a temporary store; stopped and
/// removed when dropped. nats-server comes from PATH (scripts/install-deps
/// installs it): its absence fails the test, it does not skip it.
///
/// The same layout as tests/cluster/natscluster.py, which the mounted
/// cluster tests use.
public final class NATSServers: @unchecked Sendable {
    struct Server {
        var name: String
        var clientPort: Int
        var clusterPort: Int
        var monitorPort: Int
        var storeDir: String
        var pid: pid_t = 0
    }

    private let servers: AdaptiveMutex<[Server]>
    public let directory: String
    public let clustered: Bool

    /// The client URL of each server, in order.
    public var urls: [String] { servers.withLock { $0.map { "nats://127.0.0.1:\($0.clientPort)" } } }
    public func url(_ i: Int) -> String { urls[i] }

    /// Starts `count` servers (1, or 3 for a cluster) and returns once each
    /// answers /healthz, that is, has JetStream up and, in a cluster, is
    /// current with an elected meta leader.
    public init(count: Int = 1) throws {
        precondition(count >= 1)
        var template = Array("/tmp/mcastfs-nats-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw ServerError("mkdtemp: errno \(errno)") }
        directory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        clustered = count > 1
        var list: [Server] = []
        for i in 1...count {
            let store = "\(directory)/s\(i)"
            mkdir(store, 0o700)
            list.append(Server(name: "s\(i)", clientPort: try freePort(), clusterPort: try freePort(), monitorPort: try freePort(), storeDir: store))
        }
        servers = AdaptiveMutex(list)
        // A port picked free may be taken by another test's server before
        // ours binds it: then start again on new ports.
        for attempt in 1...3 {
            do {
                for i in 0..<count { try spawn(i) }
                for i in 0..<count { try waitHealthy(i) }
                return
            } catch let error as ServerError where error.portInUse && attempt < 3 {
                stopProcesses()
                for i in 0..<count {
                    let ports = (try freePort(), try freePort(), try freePort())
                    servers.withLock { s in (s[i].clientPort, s[i].clusterPort, s[i].monitorPort) = ports }
                }
            } catch {
                stop()
                throw error
            }
        }
    }

    deinit { stop() }

    private func arguments(_ s: Server, routes: [Int]) -> [String] {
        var args = ["nats-server", "-js", "-a", "127.0.0.1", "-p", "\(s.clientPort)", "-m", "\(s.monitorPort)",
                    "-n", s.name, "-sd", s.storeDir, "-l", "\(s.storeDir).log"]
        if clustered {
            args += ["--cluster_name", "mcastfs-test", "--cluster", "nats://127.0.0.1:\(s.clusterPort)",
                     "--routes", routes.map { "nats://127.0.0.1:\($0)" }.joined(separator: ",")]
        }
        return args
    }

    private func spawn(_ i: Int) throws {
        let (server, routes) = servers.withLock { s in (s[i], s.map(\.clusterPort)) }
        let pid = try spawnProcess(arguments(server, routes: routes))
        servers.withLock { $0[i].pid = pid }
    }

    /// Waits until server `i` answers /healthz with 200 (JetStream ready and,
    /// in a cluster, current with the meta leader), or fails after `timeout`.
    public func waitHealthy(_ i: Int, timeout: Duration = .seconds(15)) throws {
        let (port, pid) = servers.withLock { ($0[i].monitorPort, $0[i].pid) }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                servers.withLock { $0[i].pid = 0 }
                let log = tail(of: "\(directory)/s\(i + 1).log")
                throw ServerError("nats-server s\(i + 1) exited (status \(status)): \(log)",
                                  portInUse: log.contains("address already in use"))
            }
            if httpStatus(port: port, path: "/healthz") == 200 { return }
            usleep(20_000)
        }
        let health = httpGet(port: port, path: "/healthz")?.body ?? "no answer"
        throw ServerError("nats-server s\(i + 1) not healthy within \(timeout): \(health)")
    }

    /// SIGKILL: the server dies mid-whatever, its store stays.
    public func kill(_ i: Int) {
        let pid = servers.withLock { s -> pid_t in defer { s[i].pid = 0 }; return s[i].pid }
        guard pid > 0 else { return }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    /// Starts server `i` again on its ports and store; returns once healthy.
    public func restart(_ i: Int) throws {
        try spawn(i)
        try waitHealthy(i)
    }

    public func stop() {
        stopProcesses()
        if let rm = try? spawnProcess(["rm", "-rf", directory]) {
            var status: Int32 = 0
            waitpid(rm, &status, 0)
        }
    }

    private func stopProcesses() {
        let pids = servers.withLock { s -> [pid_t] in
            defer { for i in s.indices { s[i].pid = 0 } }
            return s.map(\.pid)
        }
        for pid in pids where pid > 0 { Glibc.kill(pid, SIGTERM) }
        for pid in pids where pid > 0 {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }

    /// The body of a monitoring endpoint of server `i` (such as "/jsz").
    public func monitor(_ i: Int, _ path: String) -> String? {
        let port = servers.withLock { $0[i].monitorPort }
        return httpGet(port: port, path: path)?.body
    }
}

public struct ServerError: Error, CustomStringConvertible {
    public let description: String
    public let portInUse: Bool
    public init(_ description: String, portInUse: Bool = false) {
        self.description = description
        self.portInUse = portInUse
    }
}

/// The last lines of a server's log, for the error that says it died.
private func tail(of path: String) -> String {
    guard let f = fopen(path, "r") else { return "(no log at \(path))" }
    defer { fclose(f) }
    var lines: [String] = []
    var buffer = [CChar](repeating: 0, count: 4096)
    while fgets(&buffer, Int32(buffer.count), f) != nil {
        lines.append(String(decoding: buffer.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        if lines.count > 4 { lines.removeFirst() }
    }
    return lines.joined(separator: " | ")
}

/// A port that was free a moment ago (the kernel's pick for port 0).
private func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ServerError("socket: errno \(errno)") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sp in
            bind(fd, sp, len) == 0 && getsockname(fd, sp, &len) == 0
        }
    }
    guard bound else { throw ServerError("bind: errno \(errno)") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

private func spawnProcess(_ args: [String]) throws -> pid_t {
    var pid: pid_t = 0
    var cArgs = args.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    // Nothing else of the test process: nats.c's sockets are not
    // close-on-exec, and a server holding a copy of another test's client
    // socket would keep that connection alive for its server after the
    // client closed it.
    _ = closeFrom(&actions, 3)
    let rc = posix_spawnp(&pid, args[0], &actions, nil, &cArgs, environ)
    if rc == ENOENT {
        throw ServerError("\(args[0]) is not on PATH: scripts/install-deps installs it (Debian package nats-server)")
    }
    guard rc == 0 else { throw ServerError("posix_spawnp \(args[0]): error \(rc)") }
    return pid
}

/// glibc's posix_spawn_file_actions_addclosefrom_np (2.34), which Swift's
/// Glibc module does not import.
private let closeFrom: @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32 = {
    guard let f = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        fatalError("glibc 2.34 or later is required (posix_spawn_file_actions_addclosefrom_np)")
    }
    return unsafeBitCast(f, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

private func httpStatus(port: Int, path: String) -> Int? { httpGet(port: port, path: path)?.status }

/// A minimal HTTP/1.0 GET on loopback, for nats-server's monitoring port.
private func httpGet(port: Int, path: String) -> (status: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { return nil }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard write(fd, request, request.count) == request.count else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1."), let space = text.firstIndex(of: " ") else { return nil }
    let code = Int(text[text.index(after: space)...].prefix(3)) ?? 0
    let separator = Array("\r\n\r\n".utf8)
    let start = (0...max(response.count - separator.count, 0)).first { Array(response[$0..<min($0 + 4, response.count)]) == separator }
    let body = start.map { String(decoding: response[($0 + 4)...], as: UTF8.self) } ?? ""
    return (code, body)
}
