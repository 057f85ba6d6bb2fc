import CFuse
import Glibc
package import Logging
package import SystemPackage

/// The kernel's side of a session that has no mount: it receives every
/// message libfuse writes — each reply, whenever and on whichever thread it
/// is answered, and each notification (unique 0) — as libfuse's own reply
/// functions encoded it, header included.
///
/// Package-only: libfuse's custom I/O (`fuse_session_custom_io`) is how
/// this package's fake kernel (the FUSETesting module) drives the real
/// operation table and the real replies without /dev/fuse; it is not a
/// transport this layer promises its users.
package protocol FUSEChannel: AnyObject, Sendable {
    /// One whole message, as write(2) on /dev/fuse would take it. Returns
    /// nil if taken, else the errno that write(2) would fail with (ENOENT:
    /// the kernel no longer knows the request).
    func receive(_ message: [UInt8]) -> Errno?
}

extension FUSESession {
    /// A session whose messages go to `channel`, and whose requests come
    /// from `process(_:)`. FUSE_INIT must be the first request, as on a
    /// mount. `run`, `mount` and `unmount` do not apply.
    package convenience init(
        operations: any FilesystemOperations, channel: any FUSEChannel, options: [String] = [],
        logger: Logger = Logger(label: "mcastfs")
    ) throws(FUSESessionError) {
        try self.init(core: SessionCore(operations: operations, channel: channel, logger: logger), options: options)
        // libfuse wants a descriptor it can close at destroy; it never reads
        // or writes it, as both go through the callbacks.
        let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw FUSESessionError(.state, "cannot open /dev/null: \(Errno(rawValue: errno))") }
        var io = fuse_custom_io()
        io.writev = channelWritev
        io.read = channelRead
        let rc = withSessionPointer { fuse_session_custom_io($0, &io, fd) } ?? -EINVAL
        guard rc == 0 else {
            close(fd)
            throw FUSESessionError(.state, "fuse_session_custom_io failed: \(Errno(rawValue: -rc))")
        }
    }

    /// Hands one raw request (fuse_in_header, arguments) to libfuse, which
    /// dispatches it to the filesystem on this thread. Returns false, doing
    /// nothing, once the session is being destroyed.
    @discardableResult
    package func process(_ request: [UInt8]) -> Bool {
        var bytes = request
        return bytes.withUnsafeMutableBytes { raw -> Bool in
            withSessionPointer { session in
                core.gate.ifOpen {
                    var buffer = fuse_buf()
                    buffer.size = raw.count
                    buffer.mem = raw.baseAddress
                    buffer.fd = -1
                    fuse_session_process_buf(session, &buffer)
                }
            } != nil
        }
    }
}

/// libfuse's write of one message: `userdata` is the session's core
/// (`se->userdata` in 3.14's fuse_send_msg).
private let channelWritev: @convention(c) (Int32, UnsafeMutablePointer<iovec>?, Int32, UnsafeMutableRawPointer?) -> Int = {
    _, iov, count, userdata in
    guard let userdata, let iov, let channel = Unmanaged<SessionCore>.fromOpaque(userdata).takeUnretainedValue().channel else {
        errno = EINVAL
        return -1
    }
    var message: [UInt8] = []
    for part in UnsafeBufferPointer(start: iov, count: Int(count)) {
        message.append(contentsOf: UnsafeRawBufferPointer(start: part.iov_base, count: part.iov_len))
    }
    if let refused = channel.receive(message) {
        errno = refused.rawValue
        return -1
    }
    return message.count
}

/// Never called: requests arrive through `process`, not libfuse's loop.
/// ENODEV, should a loop ever read, ends it as an unmount would.
private let channelRead: @convention(c) (Int32, UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int = {
    _, _, _, _ in
    errno = ENODEV
    return -1
}
