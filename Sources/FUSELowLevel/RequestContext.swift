/// Who made a request (from `fuse_req_ctx`). `pid` is the calling thread's
/// id. `umask` is set only for mknod, mkdir and create; 0 otherwise.
public struct RequestContext: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    public var umask: UInt32

    public init(uid: UInt32, gid: UInt32, pid: Int32, umask: UInt32 = 0) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.umask = umask
    }
}
