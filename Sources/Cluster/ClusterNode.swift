import Glibc
import Locking
import NATSClient

/// One mcastfs daemon in a cluster (docs/cluster.md): its connection, its
/// claim on its node name, its view of every group and member, its
/// consumers, and its writes.
///
/// Threads of its own: one per bucket watcher, one for events, one for
/// heartbeats and the liveness of other nodes, one for timers, and one per
/// group with local members (the delivery loop). All stop at `shutDown()`.
public final class ClusterNode: Sendable {
    let configuration: ClusterConfiguration
    let space: ClusterSpace
    /// Random per daemon start: in consumer names and message ids, so that
    /// nothing of an earlier run of the same node is taken for this one's.
    let boot: String
    /// `Nats-Msg-Id`s of this node's messages: this, then a counter.
    private let messageIdPrefix: String
    /// The node's name as the `Mcastfs` header of its messages carries it.
    let encodedNode: String
    let connection: NATSConnection
    let js: JetStream
    /// The heartbeats' own context. nats.c 3.4.1 keeps every asynchronous
    /// publish with a MaxWait in one list per context, ordered by deadline,
    /// until the deadline passes (a PubAck does not take it out), and
    /// inserts by walking it from the head unless the new deadline is the
    /// latest: a beat (deadline one interval away) among the messages' (500
    /// ms) made every message published after it walk thousands of entries,
    /// 27 % of a writing node's CPU at 1→1 (perf, `js_PublishMsgAsync`).
    let beats: JetStream
    let groupsBucket: KeyValueBucket
    let membersBucket: KeyValueBucket
    let nodesBucket: KeyValueBucket
    let host: String

    let view = AdaptiveMutex(View())
    let local = Monitor(LocalState())
    /// Held across a join, a leave, and the removal of a consumer, so that a
    /// group's consumer is made or deleted by one of them at a time.
    let membership = AdaptiveMutex(())
    let eventQueue: EventQueue
    let timers = Timers()
    private let relay: Relay
    private let watchers = AdaptiveMutex<[KeyValueWatcher]>([])

    struct LocalState {
        var connected = true
        var shutDown = false
        /// Bumped at every reconnect: delivery loops hand their consumers over.
        var connectionGeneration = 0
        var counter: UInt64 = 0
        var beat: UInt64 = 0
        /// This node's own last heartbeat failed (the nodes bucket had no
        /// leader, or no answer): it judges no other node meanwhile.
        var beatFailing = false
        /// Group id → this node's part in the group.
        var parts: [String: LocalPart] = [:]
        var writers: [String: Writers] = [:]
    }

    struct LocalPart {
        var members: Set<String> = []
        var delivery: Delivery
    }

    /// Connects (an unreachable cluster fails within a few seconds), makes
    /// the three buckets if missing, claims the node name, starts the
    /// heartbeats and watchers, and returns once the current groups and
    /// members are loaded.
    public init(_ configuration: ClusterConfiguration, events: @escaping @Sendable (ClusterEvent) -> Void) throws(ClusterError) {
        let space = try configuration.validated()
        self.configuration = configuration
        self.space = space
        boot = randomHex(8)
        messageIdPrefix = space.messageIdPrefix(node: configuration.node, boot: boot)
        encodedNode = ClusterName.encode(configuration.node)
        host = hostName()
        let relay = Relay()
        self.relay = relay
        var options = ConnectionOptions(servers: configuration.servers, name: "mcastfs node \(configuration.node)")
        options.connectTimeout = .seconds(2)
        do {
            connection = try NATSConnection(options) { relay.forward($0) }
        } catch {
            throw .unreachable("no NATS server answered at \(configuration.servers.joined(separator: " ")) (\(error))")
        }
        do throws(NATSError) {
            var jsOptions = JetStreamOptions()
            jsOptions.timeout = .seconds(5)
            let jetStream = try JetStream(connection, options: jsOptions)
            js = jetStream
            beats = try JetStream(connection, options: jsOptions)
            let replicas = configuration.servers.count >= 3 ? 3 : 1
            // Bound if it exists (whatever its replicas: a node given one URL
            // of a three-server cluster must not fail on the bucket a node
            // given all three made), made if not.
            func bucket(_ name: String) throws(NATSError) -> KeyValueBucket {
                do {
                    return try jetStream.keyValue(bucket: name)
                } catch where error.status == .notFound {
                    var config = KeyValueConfig(bucket: name)
                    config.history = 1
                    config.replicas = replicas
                    return try jetStream.createKeyValue(config)
                }
            }
            groupsBucket = try bucket(space.groupsBucket)
            membersBucket = try bucket(space.membersBucket)
            nodesBucket = try bucket(space.nodesBucket)
        } catch {
            connection.close()
            throw ClusterError(error)
        }
        eventQueue = EventQueue(events)
        relay.set { [self] event in connectionEvent(event) }
        do throws(ClusterError) {
            let predecessor = try claimNodeName()
            try startWatchers()
            removeLeftovers(of: predecessor)
        } catch {
            stopEverything()
            throw error
        }
        startHeartbeats()
    }

    // MARK: The view

    /// Every group (a `removing` one too, until its entry is gone).
    public func groups() -> [GroupRecord] {
        view.withLock { v in v.groups.values.compactMap(\.value).sorted { $0.name < $1.name } }
    }

    public func group(_ name: String) -> GroupRecord? {
        view.withLock { $0.groups[name]?.value }
    }

    /// Every node's members of the group.
    public func members(of group: String) -> [MemberRecord] {
        view.withLock { v in
            guard let id = v.groups[group]?.value?.id else { return [] }
            return v.liveMembers(id)
        }
    }

    /// The counters of every member of `group` on `node`, as that node's
    /// last heartbeat reported them (so up to a heartbeat interval old);
    /// empty for a node not heard or a group it has no member of.
    public func reportedCounters(of group: String, on node: String) -> [MemberCounters] {
        view.withLock { v in
            guard let id = v.groups[group]?.value?.id else { return [] }
            return v.nodes[space.nodeKey(node)]?.record?.counters?[id] ?? []
        }
    }

    /// The nodes whose heartbeats this node hears (itself included).
    public func nodes() -> [String] {
        view.withLock { v in v.nodes.compactMap { $0.value.record?.node }.sorted() }
    }

    // MARK: Groups

    /// A KV create (the one winner of a race; `.exists` for the others),
    /// after making the group's stream, so that a group any node sees has
    /// its stream. `record.id` empty: a fresh one is chosen.
    @discardableResult
    public func makeGroup(_ record: GroupRecord) throws(ClusterError) -> GroupRecord {
        try checkUsable()
        try checkName(record.name)
        try record.settings.validate()
        var record = record
        if record.id.isEmpty { record.id = randomHex(16) }
        record.state = .live
        let stream = streamConfig(record)
        do {
            _ = try js.addStream(stream)
        } catch {
            throw ClusterError(error)
        }
        let key = space.groupKey(record.name)
        do {
            let revision = try groupsBucket.create(key, encodeRecord(record))
            view.withLock { $0.applyLocalGroup(name: record.name, revision: revision, record) }
            return record
        } catch {
            try? js.deleteStream(stream.name)
            if error.code == .streamWrongLastSequence { throw .exists }
            throw ClusterError(error)
        }
    }

    /// Read, change, update at the revision read; again on a stale revision.
    /// The name, id and state stay. Lowering `clusterBacklog` while the group
    /// has members anywhere is `.busy` (nats-server#2589 would drop held
    /// messages); a change of it or of `replicas` updates the stream first.
    public func updateGroup(_ name: String, _ change: @Sendable (inout GroupRecord) -> Void) throws(ClusterError) {
        try checkUsable()
        let key = space.groupKey(name)
        for _ in 0..<64 {
            guard let (revision, old) = try readGroup(key), old.state == .live else { throw .notFound }
            var record = old
            change(&record)
            record.name = old.name
            record.id = old.id
            record.state = old.state
            try record.settings.validate()
            if record == old { return }
            if record.settings.clusterBacklog < old.settings.clusterBacklog, try !memberKeys(of: old.id).isEmpty {
                throw .busy
            }
            if record.settings.clusterBacklog != old.settings.clusterBacklog || record.settings.replicas != old.settings.replicas {
                do { _ = try js.updateStream(streamConfig(record)) } catch { throw ClusterError(error) }
            }
            do {
                let new = try groupsBucket.update(key, encodeRecord(record), revision: revision)
                view.withLock { $0.applyLocalGroup(name: name, revision: new, record) }
                return
            } catch where error.code == .streamWrongLastSequence {
                continue
            } catch {
                throw ClusterError(error)
            }
        }
        throw .busy
    }

    /// Marks the group `removing`, looks for members on any node (`.notEmpty`
    /// and back to `live` if there are), else deletes the entry and the
    /// stream. A join checks the entry after its own create, so a join
    /// racing this either makes it fail or fails.
    public func removeGroup(_ name: String) throws(ClusterError) {
        try checkUsable()
        let key = space.groupKey(name)
        for _ in 0..<64 {
            guard let (revision, record) = try readGroup(key) else { throw .notFound }
            var removing = record
            removing.state = .removing
            let marked: UInt64
            do {
                marked = try groupsBucket.update(key, encodeRecord(removing), revision: revision)
            } catch where error.code == .streamWrongLastSequence {
                continue
            } catch {
                throw ClusterError(error)
            }
            if try !memberKeys(of: record.id).isEmpty {
                var live = record
                live.state = .live
                if let back = try? groupsBucket.update(key, encodeRecord(live), revision: marked) {
                    view.withLock { $0.applyLocalGroup(name: name, revision: back, live) }
                }
                throw .notEmpty
            }
            do {
                try groupsBucket.delete(key)
            } catch {
                throw ClusterError(error)
            }
            view.withLock { $0.applyLocalGroup(name: name, revision: marked, nil) }
            if let writers = local.update({ $0.writers.removeValue(forKey: record.id) }) {
                writers.stop(failing: .notFound)
            }
            do {
                try js.deleteStream(space.stream(record.id))
            } catch where error.code == .streamNotFound {
            } catch {
                // The entry is gone, so no node uses the stream again; an
                // operator may delete it.
            }
            return
        }
        throw .busy
    }

    func readGroup(_ key: String) throws(ClusterError) -> (UInt64, GroupRecord)? {
        let entry: KeyValueEntry?
        do { entry = try groupsBucket.get(key) } catch { throw ClusterError(error) }
        guard let entry, entry.operation == .put, let record = decodeRecord(GroupRecord.self, entry.value) else { return nil }
        return (entry.revision, record)
    }

    /// The members bucket's keys of a group, read from the server (not the
    /// view, which may be a moment behind another node's join).
    func memberKeys(of id: String) throws(ClusterError) -> [String] {
        do {
            let watcher = try membersBucket.watch("\(id).*", ignoreDeletes: true)
            defer { watcher.stop() }
            var keys: [String] = []
            let deadline = monotonicNow() + .seconds(5)
            while monotonicNow() < deadline {
                switch try watcher.next(timeout: .seconds(1)) {
                case .entry(let e)?: if e.operation == .put { keys.append(e.key) }
                case .initialValuesDone?: return keys
                case nil: continue
                }
            }
            throw ClusterError.unreachable("listing the members of a group timed out")
        } catch let error as NATSError {
            throw ClusterError(error)
        } catch {
            throw error as! ClusterError
        }
    }

    func streamConfig(_ record: GroupRecord) -> StreamConfig {
        var c = StreamConfig(name: space.stream(record.id), subjects: [space.subject(record.id)])
        c.description = "mcastfs group \(record.name)"
        c.retention = .interest
        c.discard = .new
        c.maxMessages = Int64(record.settings.clusterBacklog)
        c.storage = .file
        c.replicas = record.settings.replicas
        c.duplicateWindow = .seconds(120)
        return c
    }

    // MARK: Members

    /// Updates any node's member at its revision (again on a stale one);
    /// the name, node and `from` stay.
    public func updateMember(_ group: String, _ member: String, _ change: @Sendable (inout MemberRecord) -> Void) throws(ClusterError) {
        try checkUsable()
        guard let id = view.withLock({ $0.groups[group]?.value?.id }) else { throw .notFound }
        let key = space.memberKey(group: id, member: member)
        for _ in 0..<64 {
            let entry: KeyValueEntry?
            do { entry = try membersBucket.get(key) } catch { throw ClusterError(error) }
            guard let entry, entry.operation == .put, let old = decodeRecord(MemberRecord.self, entry.value) else { throw .notFound }
            var record = old
            change(&record)
            record.name = old.name
            record.node = old.node
            record.from = old.from
            if record == old { return }
            do {
                let revision = try membersBucket.update(key, encodeRecord(record), revision: entry.revision)
                view.withLock { $0.applyLocalMember(group: id, member: member, revision: revision, record) }
                return
            } catch where error.code == .streamWrongLastSequence {
                continue
            } catch {
                throw ClusterError(error)
            }
        }
        throw .busy
    }

    // MARK: State

    func checkUsable() throws(ClusterError) {
        let (shutDown, connected) = local.read { ($0.shutDown, $0.connected) }
        if shutDown { throw .cancelled }
        if !connected { throw .unreachable("disconnected from NATS, reconnecting") }
    }

    func checkName(_ name: String) throws(ClusterError) {
        let n = name.utf8.count
        if n < 1 || n > 255 || name.contains("/") || name.utf8.contains(0) {
            throw .invalid("a name is 1 to 255 bytes with no '/' or NUL")
        }
    }

    /// `count` fresh ids, numbered in one hold of the node's lock.
    func nextMessageIds(_ count: Int) -> [String] {
        let last = local.update { s -> UInt64 in
            s.counter += UInt64(count)
            return s.counter
        }
        let prefix = messageIdPrefix
        return (0..<UInt64(count)).map { prefix + String(last - UInt64(count) + 1 + $0) }
    }

    // MARK: Node name, heartbeats, liveness

    func nodeRecord(beat: UInt64) -> NodeRecord {
        let deliveries = local.read { s in s.parts.mapValues(\.delivery) }
        // Read outside the node's lock: a sink takes its group's lock.
        let counters = deliveries.mapValues(\.counters).filter { !$0.value.isEmpty }
        return NodeRecord(node: configuration.node, boot: boot, host: host, pid: getpid(),
                          timeoutMs: Int(configuration.timeout / .milliseconds(1)), beat: beat,
                          consumers: deliveries.mapValues(\.consumerName),
                          counters: counters.isEmpty ? nil : counters)
    }

    private enum Claim {
        case taken(predecessor: NodeRecord?)
        /// The key was deleted meanwhile: try again.
        case again
    }

    /// docs/cluster.md, "Nodes, liveness and uniqueness": a KV create; if the
    /// key exists, its holder is alive if it beats within its timeout + 1 s.
    /// Returns the dead holder's record when the name was taken over.
    private func claimNodeName() throws(ClusterError) -> NodeRecord? {
        let key = space.nodeKey(configuration.node)
        while true {
            if case .taken(let predecessor) = try claim(key) { return predecessor }
        }
    }

    private func claim(_ key: String) throws(ClusterError) -> Claim {
        do {
            try nodesBucket.create(key, encodeRecord(nodeRecord(beat: 0)))
            return .taken(predecessor: nil)
        } catch {
            if error.code != .streamWrongLastSequence { throw ClusterError(error) }
        }
        let found: KeyValueEntry?
        do { found = try nodesBucket.get(key) } catch { throw ClusterError(error) }
        guard let entry = found else { return .again }
        let holder = decodeRecord(NodeRecord.self, entry.value)
        let holderTimeout = Duration.milliseconds(holder?.timeoutMs ?? Int(configuration.timeout / .milliseconds(1)))
        let inUse = ClusterError.nodeNameInUse(node: configuration.node, host: holder?.host ?? "?", pid: holder?.pid ?? 0)
        let watcher: KeyValueWatcher
        do { watcher = try nodesBucket.watch(key) } catch { throw ClusterError(error) }
        defer { watcher.stop() }
        let deadline = monotonicNow() + holderTimeout + .seconds(1)
        while monotonicNow() < deadline {
            let update: KeyValueUpdate?
            do { update = try watcher.next(timeout: deadline - monotonicNow()) } catch { throw ClusterError(error) }
            guard case .entry(let e)? = update, e.revision > entry.revision else { continue }
            // A heartbeat: its holder lives. A delete: free, claim it again.
            if e.operation == .put { throw inUse }
            return .again
        }
        do {
            try nodesBucket.update(key, encodeRecord(nodeRecord(beat: 0)), revision: entry.revision)
            return .taken(predecessor: holder)
        } catch {
            // Another starter took the dead holder's name first.
            if error.code == .streamWrongLastSequence { throw inUse }
            throw ClusterError(error)
        }
    }

    private func startHeartbeats() {
        startThread("cluster-beat") { [self] in
            while true {
                let stop = local.wait(timeout: configuration.heartbeatInterval) { s in s.shutDown ? true : nil }
                if stop == true { return }
                heartbeat()
                checkLiveness()
            }
        }
    }

    /// Published without waiting (a KV put is a publish to the key's
    /// subject): a beat never blocks the next one behind a request timeout.
    /// A synchronous put could wait 5 s for a bucket electing a leader, and
    /// the others, beating again before it returned, took this node for
    /// dead (`aServerOfThreeDiesMidStream...`, 1 run in 5).
    func heartbeat() {
        let (beat, connected) = local.update { s -> (UInt64, Bool) in
            s.beat += 1
            return (s.beat, s.connected)
        }
        guard connected else { return }
        let key = space.nodeKey(configuration.node)
        var options = PublishOptions()
        options.timeout = configuration.heartbeatInterval
        let record = encodeRecord(nodeRecord(beat: beat))
        let sent = record.withUnsafeBytes { bytes in
            Result { () throws(NATSError) in
                try beats.publishAsync(subject: "$KV.\(space.nodesBucket).\(key)", payload: bytes,
                                    msgId: "beat.\(key).\(boot).\(beat)", options: options) { [self] result in
                    beaten(ok: (try? result.get()) != nil)
                }
            }
        }
        if case .failure = sent { beaten(ok: false) }
    }

    private func beaten(ok: Bool) {
        let recovered = local.update { s -> Bool in
            defer { s.beatFailing = !ok }
            return ok && s.beatFailing
        }
        // The others could not beat either while this node could not (a
        // leader election of the nodes bucket, 4 to 9 s): their silence
        // counts from now, as after a reconnect.
        if recovered {
            let now = monotonicNow()
            view.withLock { v in for key in v.nodes.keys { v.nodes[key]?.seen = now } }
        }
    }

    // MARK: Watchers and events

    /// A bucket's change as the view takes it; `value` nil: deleted.
    struct Update {
        var key: String
        var revision: UInt64
        var value: [UInt8]?

        init(_ e: KeyValueEntry) {
            key = e.key
            revision = e.revision
            value = e.operation == .put ? e.value : nil
        }

        init(deleted key: String, at revision: UInt64) {
            self.key = key
            self.revision = revision
            value = nil
        }
    }

    /// `reload`: after a reconnect, new watchers replace the old ones; their
    /// current values are reported where they differ from the view, and a
    /// key the view has that is gone now is taken as deleted (at the
    /// bucket's last revision, which is at least its delete's), so that
    /// nothing missed during the outage stays wrong.
    func startWatchers(reload: Bool = false) throws(ClusterError) {
        let loaded = Monitor(0)
        let old = watchers.withLock { w -> [KeyValueWatcher] in
            defer { w.removeAll() }
            return w
        }
        for watcher in old { watcher.stop() }
        do {
            try watch(groupsBucket, "groups", loaded, reload: reload, known: { [self] in
                view.withLock { v in v.groups.compactMap { $0.value.value == nil ? nil : space.groupKey($0.key) } }
            }) { [self] update, initial in groupUpdate(update, initial) }
            try watch(membersBucket, "members", loaded, reload: reload, known: { [self] in
                view.withLock { v in
                    v.members.flatMap { id, group in group.compactMap { $0.value.value == nil ? nil : space.memberKey(group: id, member: $0.key) } }
                }
            }) { [self] update, initial in memberUpdate(update, initial) }
            try watch(nodesBucket, "nodes", loaded, reload: reload, known: { [self] in
                view.withLock { v in Array(v.nodes.keys) }
            }) { [self] update, _ in nodeUpdate(update) }
        } catch {
            throw ClusterError(error)
        }
        let done = loaded.wait(timeout: .seconds(30)) { $0 == 3 ? true : nil }
        if done == nil { throw .unreachable("loading the cluster's groups and members timed out") }
    }

    private func watch(_ bucket: KeyValueBucket, _ name: String, _ loaded: Monitor<Int>, reload: Bool,
                       known: @escaping @Sendable () -> [String],
                       _ apply: @escaping @Sendable (Update, Bool) -> Void) throws(NATSError) {
        let watcher = try bucket.watch(">")
        watchers.withLock { $0.append(watcher) }
        startThread("cluster-\(name)") { [self] in
            var initial = true
            var seen: Set<String> = []
            while !local.read({ $0.shutDown }) {
                do throws(NATSError) {
                    switch try watcher.next(timeout: .seconds(1)) {
                    case .entry(let e)?:
                        if initial && reload { seen.insert(e.key) }
                        apply(Update(e), initial && !reload)
                    case .initialValuesDone?:
                        if initial && reload, let last = try? js.streamInfo("KV_\(bucket.name)").state.lastSequence {
                            // Each missing key is asked for by itself before
                            // it is taken as deleted: a watcher started while
                            // the bucket's servers change can report its
                            // initial values done early (seen on three
                            // servers: a live member taken for gone).
                            for key in known() where !seen.contains(key) {
                                guard case .success(nil) = Result(catching: { () throws(NATSError) in try bucket.get(key) }) else { continue }
                                apply(Update(deleted: key, at: last), false)
                            }
                        }
                        if initial { loaded.change { $0 += 1 } }
                        initial = false
                    case nil: continue
                    }
                } catch {
                    if error.status == .illegalState || local.read({ $0.shutDown }) { return }
                    usleep(50_000)
                }
            }
        }
    }

    private func groupUpdate(_ entry: Update, _ initial: Bool) {
        guard let bytes = ClusterName.decode(entry.key) else { return }
        let name = String(decoding: bytes, as: UTF8.self)
        let record = entry.value.flatMap { decodeRecord(GroupRecord.self, $0) }
        if entry.value != nil && record == nil { return }
        let removed = view.withLock { v -> String? in
            let id = v.groups[name]?.value?.id
            let events = v.applyGroup(name: name, revision: entry.revision, record)
            if !initial { eventQueue.post(events) }
            return record == nil ? id : nil
        }
        // Writes waiting for room in a group that is gone fail now rather
        // than retry into a deleted stream.
        if let removed, let writers = local.update({ $0.writers.removeValue(forKey: removed) }) {
            writers.stop(failing: .notFound)
        }
    }

    private func memberUpdate(_ entry: Update, _ initial: Bool) {
        guard let dot = entry.key.firstIndex(of: "."),
              let bytes = ClusterName.decode(String(entry.key[entry.key.index(after: dot)...]))
        else { return }
        let id = String(entry.key[..<dot])
        let member = String(decoding: bytes, as: UTF8.self)
        let record = entry.value.flatMap { decodeRecord(MemberRecord.self, $0) }
        if entry.value != nil && record == nil { return }
        view.withLock { v in
            let events = v.applyMember(group: id, member: member, revision: entry.revision, record)
            if !initial { eventQueue.post(events) }
        }
        if record == nil { memberGone(groupId: id, member) }
    }

    private func nodeUpdate(_ entry: Update) {
        let record = entry.value.flatMap { decodeRecord(NodeRecord.self, $0) }
        let now = monotonicNow()
        view.withLock { v in
            if let known = v.nodes[entry.key], known.revision > entry.revision { return }
            v.nodes[entry.key] = record.map { View.NodeSeen(revision: entry.revision, record: $0, seen: now) }
        }
    }

    // MARK: Connection

    private func connectionEvent(_ event: ConnectionEvent) {
        switch event {
        case .disconnected:
            local.change { $0.connected = false }
            eventQueue.post([.disconnected])
            disconnected()
        case .reconnected:
            local.change { s in
                s.connected = true
                s.connectionGeneration += 1
            }
            // Its own outage is not the others' death: every deadline
            // restarts from now.
            let now = monotonicNow()
            view.withLock { v in for key in v.nodes.keys { v.nodes[key]?.seen = now } }
            eventQueue.post([.reconnected])
            reconnected()
        case .closed, .error:
            break
        }
    }

    // MARK: Shutting down

    /// For unmount: deletes this node's consumers, member entries and node
    /// key, stops every thread, closes the connection. Idempotent. While
    /// disconnected it leaves them, as a crash does: each request would
    /// wait out its timeout (a daemon with one member took 32 s to exit with
    /// its server gone), and the other nodes remove them after
    /// `cluster_timeout`, or the next daemon of this name when it starts.
    /// Returns whether they were removed.
    @discardableResult
    public func shutDown() -> Bool {
        let (first, connected, parts) = local.change { s -> (Bool, Bool, [String: LocalPart]) in
            defer { s.shutDown = true }
            return (!s.shutDown, s.connected, s.parts)
        }
        guard first else { return true }
        guard connected else {
            // Closed first: stopping a watcher deletes its consumer, a
            // request that would wait out its timeout too (5 s each).
            connection.close()
            stopEverything()
            return false
        }
        for (id, part) in parts {
            part.delivery.stop()
            for member in part.members { try? membersBucket.delete(space.memberKey(group: id, member: member)) }
            try? js.deleteConsumer(stream: space.stream(id), consumer: part.delivery.consumerName)
            try? connection.publish(subject: space.roomSubject(id))
        }
        try? nodesBucket.delete(space.nodeKey(configuration.node))
        try? connection.flush(timeout: .seconds(1))
        stopEverything()
        return true
    }

    private func stopEverything() {
        local.change { s in
            s.shutDown = true
            for part in s.parts.values { part.delivery.stop() }
            s.parts.removeAll()
            for writers in s.writers.values { writers.stop(failing: .cancelled) }
            s.writers.removeAll()
        }
        for watcher in watchers.withLock({ $0 }) { watcher.stop() }
        timers.stop()
        eventQueue.stop()
        relay.set(nil)
        connection.close()
    }
}

/// Forwards connection events to the node, which does not exist yet when
/// the connection is made.
private final class Relay: Sendable {
    private let target = AdaptiveMutex<(@Sendable (ConnectionEvent) -> Void)?>(nil)
    func set(_ t: (@Sendable (ConnectionEvent) -> Void)?) { target.withLock { $0 = t } }
    func forward(_ event: ConnectionEvent) { target.withLock { $0 }?(event) }
}

/// Events in order, handed to the user's handler on one thread.
final class EventQueue: Sendable {
    private struct State {
        var events: [ClusterEvent] = []
        var stopped = false
    }
    private let state = Monitor(State())

    init(_ handler: @escaping @Sendable (ClusterEvent) -> Void) {
        startThread("cluster-events") { [state] in
            while true {
                let batch = state.wait { s -> [ClusterEvent]? in
                    if s.stopped { return [] }
                    if s.events.isEmpty { return nil }
                    defer { s.events.removeAll() }
                    return s.events
                }
                guard let batch, !batch.isEmpty else { return }
                for event in batch { handler(event) }
            }
        }
    }

    func post(_ events: [ClusterEvent]) {
        if events.isEmpty { return }
        state.change { $0.events += events }
    }

    func stop() { state.change { $0.stopped = true } }
}

func randomHex(_ digits: Int) -> String {
    var g = SystemRandomNumberGenerator()
    var s = ""
    while s.count < digits {
        let part = String(g.next() as UInt64, radix: 16)
        s += String(repeating: "0", count: 16 - part.count) + part
    }
    return String(s.prefix(digits))
}

private func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count) == 0 else { return "unknown" }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// MARK: Liveness of other nodes

extension ClusterNode {
    /// docs/cluster.md, "Nodes, liveness and uniqueness": a node whose
    /// record has not changed for its timeout is taken for dead. Not while
    /// this node is disconnected (it hears nobody then).
    ///
    /// Nor while it does not hear its own heartbeats back through its
    /// watcher: then the nodes bucket is electing a leader (no heartbeat is
    /// stored), or its watcher was on a server that died (nats.c replaces
    /// it only after 5 s of missed idle heartbeats), and it hears nobody
    /// else either. Once it hears itself again, every other node's clock
    /// restarts from then: their beats of the gap were never heard.
    func checkLiveness() {
        guard local.read({ $0.connected && !$0.shutDown && !$0.beatFailing }) else { return }
        let now = monotonicNow()
        let ownKey = space.nodeKey(configuration.node)
        let hearing = configuration.heartbeatInterval * 3
        let dead = view.withLock { v -> [(String, NodeRecord)] in
            let ownSeen = v.nodes[ownKey]?.seen ?? now
            if now - ownSeen > hearing {
                v.deaf = true
                return []
            }
            if v.deaf {
                v.deaf = false
                for key in v.nodes.keys where key != ownKey { v.nodes[key]?.seen = now }
                return []
            }
            return v.nodes.compactMap { key, seen in
                guard let record = seen.record, record.node != configuration.node,
                      now - seen.seen > .milliseconds(record.timeoutMs)
                else { return nil }
                return (key, record)
            }
        }
        for (key, record) in dead { bury(key, record) }
    }

    /// Removes what a dead node left: its members' entries (every node's
    /// watcher then reports them gone), its consumers (releasing what only
    /// they held; a room notice for each group), its key. Any node may do
    /// it, and several may at once: each step is idempotent.
    private func bury(_ key: String, _ record: NodeRecord) {
        // Forgotten only once every step succeeded; until then the next
        // check tries again (the buckets may be electing a leader when a
        // server died with the node).
        guard removeMembersAndConsumers(of: record.node, record.consumers), (try? nodesBucket.delete(key)) != nil else { return }
        view.withLock { v in
            v.nodes[key] = nil
        }
    }

    /// At start, before any member is this daemon's: the members an earlier
    /// daemon of this name left in the buckets (one that exited while
    /// disconnected, or crashed with no other node to bury it), and the
    /// consumers its record lists. Once: what fails stays until a consumer's
    /// inactive threshold, or an rm of the member.
    private func removeLeftovers(of predecessor: NodeRecord?) {
        _ = removeMembersAndConsumers(of: configuration.node, predecessor?.consumers ?? [:])
    }

    /// Whether every step succeeded.
    private func removeMembersAndConsumers(of node: String, _ consumers: [String: String]) -> Bool {
        let members = view.withLock { v -> [String] in
            var keys: [String] = []
            for (id, group) in v.members {
                for (name, member) in group where member.value?.node == node {
                    keys.append(space.memberKey(group: id, member: name))
                }
            }
            return keys
        }
        var done = true
        for member in members {
            do { try membersBucket.delete(member) } catch { done = false }
        }
        for (id, consumer) in consumers {
            do {
                try js.deleteConsumer(stream: space.stream(id), consumer: consumer)
            } catch where error.code == .consumerNotFound || error.code == .streamNotFound {
            } catch {
                done = false
            }
            try? connection.publish(subject: space.roomSubject(id))
        }
        return done
    }
}
