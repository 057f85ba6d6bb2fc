internal import CNATS

public struct KeyValueConfig: Sendable, Equatable {
    /// Letters, digits, `_` and `-` only.
    public var bucket: String
    public var description: String?
    /// Values kept per key (1 to 64).
    public var history: UInt8 = 1
    /// Every value expires this long after it was put (the bucket stream's
    /// max age; nats-server 2.9 has no per-key TTL). Expiry is silent: no
    /// watcher hears of it.
    public var ttl: Duration?
    public var maxValueSize: Int32?
    public var maxBytes: Int64?
    public var storage: StorageType = .file
    public var replicas: Int = 1

    public init(bucket: String) { self.bucket = bucket }

    func withC<R>(_ body: (UnsafeMutablePointer<kvConfig>) throws(NATSError) -> R) throws(NATSError) -> R {
        var c = kvConfig()
        try check(kvConfig_Init(&c))
        let strings = CStrings()
        c.Bucket = strings.copy(bucket)
        c.Description = strings.copy(description)
        c.History = history
        if let ttl { c.TTL = ttl.inNanoseconds }
        if let maxValueSize { c.MaxValueSize = maxValueSize }
        if let maxBytes { c.MaxBytes = maxBytes }
        c.StorageType = storage == .memory ? js_MemoryStorage : js_FileStorage
        c.Replicas = Int32(replicas)
        return try withExtendedLifetime(strings) { () throws(NATSError) in try body(&c) }
    }
}

public enum KeyValueOperation: Sendable, Equatable {
    case put, delete, purge
}

public struct KeyValueEntry: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    /// The bucket stream's sequence of this value: grows with every change
    /// of any key; `update` takes the one it expects.
    public var revision: UInt64
    /// When it was put (ns since the epoch, the server's clock).
    public var created: Int64
    public var operation: KeyValueOperation

    /// Copies out and frees nats.c's.
    init(consuming e: OpaquePointer) {
        defer { kvEntry_Destroy(e) }
        key = String(cString: kvEntry_Key(e))
        let length = Int(kvEntry_ValueLen(e))
        value = length <= 0 ? [] : Array(UnsafeRawBufferPointer(start: kvEntry_Value(e), count: length))
        revision = kvEntry_Revision(e)
        created = kvEntry_Created(e)
        operation = switch kvEntry_Operation(e) {
        case kvOp_Delete: .delete
        case kvOp_Purge: .purge
        default: .put
        }
    }

    /// From the bucket stream's message of `key`, read from the stream;
    /// frees it.
    init(key: String, consuming m: OpaquePointer) {
        defer { natsMsg_Destroy(m) }
        self.key = key
        let length = Int(natsMsg_GetDataLength(m))
        value = length <= 0 ? [] : Array(UnsafeRawBufferPointer(start: natsMsg_GetData(m), count: length))
        revision = natsMsg_GetSequence(m)
        created = natsMsg_GetTime(m)
        var op: UnsafePointer<CChar>?
        operation = if natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK, let op {
            switch String(cString: op) {
            case "DEL": .delete
            case "PURGE": .purge
            default: .put
            }
        } else {
            .put
        }
    }
}

/// A JetStream key/value bucket. Keys: letters, digits and `-_/=.`, with
/// `.` separating tokens (watch patterns use `*` and `>` on them).
public final class KeyValueBucket: @unchecked Sendable {
    let kv: OpaquePointer
    private let jetStream: JetStream

    // The bucket's stream and its keys' subjects, as nats.c names them
    // (no domain, no mirror).
    private let stream: String
    private let subjectPrefix: String

    init(kv: OpaquePointer, jetStream: JetStream) {
        self.kv = kv
        self.jetStream = jetStream
        let bucket = String(cString: kvStore_Bucket(kv))
        stream = "KV_\(bucket)"
        subjectPrefix = "$KV.\(bucket)."
    }

    deinit { kvStore_Destroy(kv) }

    public var name: String { String(cString: kvStore_Bucket(kv)) }

    /// The key's current value; `nil` when it has none or was deleted.
    /// Read from the bucket stream's leader (STREAM.MSG.GET), which has
    /// every change whose call here returned. Not kvStore_Get: nats.c 3.4
    /// makes buckets with allow_direct, and its direct get is answered by
    /// any replica, one a moment behind included: on three servers, with
    /// the bucket busy, it trailed a change just made 2 to 5 times in 900
    /// (`getSeesEveryChangeThatReturnedOnEveryServer`).
    public func get(_ key: String) throws(NATSError) -> KeyValueEntry? {
        var m: OpaquePointer?
        var code = jsErrCode(rawValue: 0)
        let status = js_GetLastMsg(&m, jetStream.js, stream, subjectPrefix + key, nil, &code)
        guard status == NATS_OK, let m else {
            let error = lastError(status, code: code)
            if error.code == .noMessageFound { return nil }
            throw error
        }
        let entry = KeyValueEntry(key: key, consuming: m)
        return entry.operation == .put ? entry : nil
    }

    /// Sets the value whatever was there; returns its revision.
    @discardableResult
    public func put(_ key: String, _ value: [UInt8]) throws(NATSError) -> UInt64 {
        var revision: UInt64 = 0
        let status = value.withUnsafeBytes { b in kvStore_Put(&revision, kv, key, b.baseAddress, Int32(b.count)) }
        try check(status)
        return revision
    }

    /// Sets the value only if the key has none (or was deleted): the one
    /// winner of a race between nodes. A key that has a value: throws with
    /// code `.streamWrongLastSequence`.
    @discardableResult
    public func create(_ key: String, _ value: [UInt8]) throws(NATSError) -> UInt64 {
        var revision: UInt64 = 0
        let status = value.withUnsafeBytes { b in kvStore_Create(&revision, kv, key, b.baseAddress, Int32(b.count)) }
        try check(status)
        return revision
    }

    /// Sets the value only if the key's revision is still `revision`;
    /// otherwise throws with code `.streamWrongLastSequence`.
    @discardableResult
    public func update(_ key: String, _ value: [UInt8], revision last: UInt64) throws(NATSError) -> UInt64 {
        var revision: UInt64 = 0
        let status = value.withUnsafeBytes { b in kvStore_Update(&revision, kv, key, b.baseAddress, Int32(b.count), last) }
        try check(status)
        return revision
    }

    /// Leaves a delete marker (watchers see `.delete`); history stays.
    public func delete(_ key: String) throws(NATSError) {
        try check(kvStore_Delete(kv, key))
    }

    /// Removes every revision of the key, leaving one purge marker.
    public func purge(_ key: String) throws(NATSError) {
        try check(kvStore_Purge(kv, key, nil))
    }

    /// Every key with a current value.
    public func keys(timeout: Duration = .seconds(5)) throws(NATSError) -> [String] {
        var o = kvWatchOptions()
        try check(kvWatchOptions_Init(&o))
        o.Timeout = timeout.inMilliseconds
        var list = kvKeysList()
        let status = kvStore_Keys(&list, kv, &o)
        if status == NATS_NOT_FOUND { return [] }
        try check(status)
        defer { kvKeysList_Destroy(&list) }
        return (0..<Int(list.Count)).compactMap { string(list.Keys[$0]) }
    }

    /// Watches the keys matching `pattern` (`>` for all): first the current
    /// value of each, then `.initialValuesDone`, then every change as it
    /// happens, in revision order.
    public func watch(_ pattern: String = ">", includeHistory: Bool = false, ignoreDeletes: Bool = false) throws(NATSError) -> KeyValueWatcher {
        var o = kvWatchOptions()
        try check(kvWatchOptions_Init(&o))
        o.IncludeHistory = includeHistory
        o.IgnoreDeletes = ignoreDeletes
        var w: OpaquePointer?
        try check(kvStore_Watch(&w, kv, pattern, &o))
        return KeyValueWatcher(watcher: w!, bucket: self)
    }
}

public enum KeyValueUpdate: Sendable, Equatable {
    case entry(KeyValueEntry)
    /// Every value that existed when the watch began has been delivered.
    case initialValuesDone
}

/// The updates of a watch, taken one at a time by one thread; `stop()`
/// from any thread ends a waiting `next`.
public final class KeyValueWatcher: @unchecked Sendable {
    private let watcher: OpaquePointer
    private let bucket: KeyValueBucket

    init(watcher: OpaquePointer, bucket: KeyValueBucket) {
        self.watcher = watcher
        self.bucket = bucket
    }

    deinit {
        kvWatcher_Stop(watcher)
        kvWatcher_Destroy(watcher)
    }

    /// The next update; `nil` when none came within `timeout`. After
    /// `stop()`, throws with status `illegalState`.
    public func next(timeout: Duration) throws(NATSError) -> KeyValueUpdate? {
        var e: OpaquePointer?
        let status = kvWatcher_Next(&e, watcher, max(timeout.inMilliseconds, 1))
        if status == NATS_TIMEOUT { return nil }
        try check(status)
        guard let e else { return .initialValuesDone }
        return .entry(KeyValueEntry(consuming: e))
    }

    public func stop() {
        kvWatcher_Stop(watcher)
    }
}
