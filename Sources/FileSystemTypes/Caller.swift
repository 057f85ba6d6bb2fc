public import SystemPackage

/// Who makes a request: the credentials the kernel gives it.
public struct Caller: Sendable, Equatable {
    public var uid: UserID
    public var gid: GroupID

    public init(uid: UserID, gid: GroupID) {
        self.uid = uid
        self.gid = gid
    }
}
