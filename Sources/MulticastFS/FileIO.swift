public import DeliveryCore
public import FileSystemTypes
import SystemPackage

// Reads, writes and poll on open files: the requests that may wait. None of
// them takes the namespace lock; an open file holds what it needs (group,
// member, reader).

extension MulticastFilesystem {
    /// read(2). A member file receives the oldest message, or the rest of the
    /// one this file began; an empty queue waits (or EAGAIN when
    /// `nonBlocking`); after the member left and its queue drained, end of file.
    /// A peer file reads its member's peer queue the same way.
    /// `reply` may be answered now, or later from the thread that sends.
    public func read(handle: UInt64, size: Int, offset: Int64, flags: OpenFlags, reply: some ReadReply) {
        let nonBlocking = flags.isNonBlocking
        let file = OpenFile.of(handle)
        switch file.content {
        case .member(_, let reader?, _), .peer(_, let reader?, _):
            // A stream's read(2) starts at offset 0; a later offset is the
            // kernel asking for more within the same read(2), after a reply
            // that filled its buffer exactly. End that read at the message.
            guard offset == 0 else { _ = reply.reply(UnsafeRawBufferPointer(start: nil, count: 0)); return }
            if file.view == .framed { return readFrames(from: reader, size: size, nonBlocking: nonBlocking, reply: reply) }
            do throws(DeliveryError) {
                Self.hand(try reader.tryReceive(maxBytes: size), of: reader, to: reply)
            } catch .wouldBlock where !nonBlocking {
                Self.wait(reply) {
                    reader.receive(maxBytes: size, .blocking) { result in
                        switch result {
                        case .success(let chunk): Self.hand(chunk, of: reader, to: reply)
                        case .failure(let error): reply.fail(Errno(error))
                        }
                    }
                }
            } catch {
                reply.fail(Errno(error))
            }
        case .status(let bytes):
            let start = min(Int(clamping: offset), bytes.count), end = min(start + size, bytes.count)
            _ = bytes[start..<end].withUnsafeBytes { reply.reply($0) }
        case .member(_, nil, _), .peer(_, nil, _), .send, .control:
            reply.fail(.badFileDescriptor)
        case .directory:
            reply.fail(.isDirectory)
        }
    }

    /// The slow path of a read or write that found it must wait: arm the
    /// reply for interrupts, then try again and park in one hold of the
    /// group's lock (`park`), and say how to cancel what parked.
    ///
    /// Why try first and park second, rather than one call that parks: the
    /// reply must be armed before a parked waiter is visible to the thread
    /// that will complete it, and the core runs nothing of a front end's
    /// under its lock (arming calls into libfuse, and answers EINTR there and
    /// then when the signal came first). Arming every request before its
    /// first try would cost the fast path, where most writes and many reads
    /// end, more than the second lock hold costs the slow one.
    /// `dropped` runs if the wait ends without its completion: interrupted
    /// before it parked, or cancelled while parked.
    static func wait(_ reply: some WaitingReply, dropped: @escaping @Sendable () -> Void = {}, _ park: () -> Waiting?) {
        guard reply.willWait() else { return dropped() }
        if let waiting = park() {
            reply.cancelOnInterrupt {
                guard waiting.cancel() else { return false }
                dropped()
                return true
            }
        }
    }

    private static func hand(_ chunk: MessageChunk?, of reader: Reader, to reply: some ReadReply) {
        guard let chunk else {
            _ = reply.reply(UnsafeRawBufferPointer(start: nil, count: 0))  // end of file
            return
        }
        // The requester died before the hand-over: the message is not lost.
        if !chunk.withUnsafeBytes({ reply.reply($0) }) { reader.putBack(chunk) }
    }

    /// write(2). On `send` or a member file: one message to every recipient,
    /// or to none; a full recipient makes it wait (EAGAIN when `nonBlocking`).
    /// On a peer file: one private message to its member, waiting while the
    /// member's queue is full. On `ctl`: one command. `reply` may be
    /// answered now or later.
    /// `flags` are the request's open flags (O_NONBLOCK, O_APPEND).
    /// `writer`: the writing thread's credentials as the kernel gave them,
    /// which every message carries.
    public func write(handle: UInt64, bytes: UnsafeRawBufferPointer, offset: Int64, flags: OpenFlags, writer: Credentials,
                      reply: some WriteReply) {
        let file = OpenFile.of(handle)
        let nonBlocking = flags.isNonBlocking
        // A stream's write(2) starts at offset 0, so a later offset is the
        // rest of one write(2) that the kernel split (a writev of more than
        // 256 segments): its first part went out as a message already, and
        // this part cannot join it. O_APPEND writes are the exception: the
        // kernel gives them its cached file size as the offset.
        let continuation = offset != 0 && !flags.options.contains(.append)
        switch file.content {
        case .send(let group):
            send(bytes, continuation: continuation, from: file, to: .group(group, as: nil), writer: writer,
                 nonBlocking: nonBlocking, reply: reply)
        case .member(let member, _, true):
            send(bytes, continuation: continuation, from: file, to: .group(member.group, as: member), writer: writer,
                 nonBlocking: nonBlocking, reply: reply)
        case .peer(let member, _, true):
            send(bytes, continuation: continuation, from: file, to: .privately(member), writer: writer,
                 nonBlocking: nonBlocking, reply: reply)
        case .control(let group):
            do throws(Errno) {
                // A longer write reaches us in parts, each of which would be
                // parsed alone: refusing the first part ends the write(2).
                guard !continuation, bytes.count <= ControlCommand.maxLength else { throw .invalidArgument }
                let command = try ControlCommand(parsing: bytes)
                if let catalog, case .member(let name, let keys) = command, group.member(named: name) == nil,
                   let remote = catalog.remoteMembers(of: group.name).first(where: { ExactName($0.name) == ExactName(name) }) {
                    // A member of another node: its node applies the change.
                    var settings = remote.settings
                    ControlCommand.apply(keys, to: &settings)
                    do throws(DeliveryError) { try settings.validate() } catch { throw Errno(error) }
                    try catalog.configure(name, of: group.name, applying: keys)
                } else if let catalog {
                    // Shared first, then applied here: a share that fails
                    // changes nothing, and an older record of the cluster
                    // adopted while the share is under way is overwritten
                    // here after it, not the other way round (a member made
                    // right after a `set` took the group's settings back
                    // then: 24 of 150, test_group_settings_set_just_after_mkdir_are_kept).
                    try command.check(against: group)
                    try share(command, of: group, with: catalog)
                    try command.apply(to: group)
                } else {
                    try command.apply(to: group)
                }
                reply.reply(written: bytes.count)
            } catch {
                reply.fail(error)
            }
        case .member(_, _, false), .peer(_, _, false), .status:
            reply.fail(.badFileDescriptor)
        case .directory:
            reply.fail(.isDirectory)
        }
    }

    /// Settings just changed here, told to the other mounts of a cluster.
    private func share(_ command: ControlCommand, of group: Group, with catalog: any SharedCatalog) throws(Errno) {
        switch command {
        case .group(let keys): try catalog.configure(group.name, applying: keys)
        case .member(let name, let keys):
            guard group.member(named: name) != nil else { return }
            try catalog.configure(name, of: group.name, applying: keys)
        }
    }

    private func send(_ bytes: UnsafeRawBufferPointer, continuation: Bool, from file: OpenFile, to destination: Destination,
                      writer: Credentials, nonBlocking: Bool, reply: some WriteReply) {
        // Lines are cut wherever the bytes arrive, so the rest of a write
        // the kernel split is just more of them.
        if let pending = file.pendingLine, destination.group.messageBoundary == .line {
            return writeLines(bytes, pending: pending, to: destination, writer: writer, nonBlocking: nonBlocking, reply: reply)
        }
        guard !continuation else { return reply.fail(.messageTooLong) }
        if file.view == .framed, case .group(let group, let sender) = destination {
            return writeBatch(bytes, to: group, as: sender, writer: writer, nonBlocking: nonBlocking, reply: reply)
        }
        let message = Message(copying: bytes, credentials: writer)
        do throws(DeliveryError) {
            try destination.trySend(message)
            reply.reply(written: bytes.count)
        } catch .wouldBlock where !nonBlocking || destination.group.isRelayed {
            // A relayed group (a cluster's) answers every send later, when
            // its stream has stored it, O_NONBLOCK or not.
            let count = bytes.count
            guard let held = hold(count, for: writer, in: destination.group) else { return reply.fail(.diskQuotaExceeded) }
            Self.wait(reply, dropped: held.release) {
                destination.send(message, nonBlocking ? .nonBlocking : .blocking) { result in
                    held.release()
                    switch result {
                    case .success: reply.reply(written: count)
                    case .failure(let error): reply.fail(Errno(error))
                    }
                }
            }
        } catch {
            reply.fail(Errno(error))
        }
    }

    /// A write about to wait for room holds its messages in the daemon:
    /// they count against the writer's user_bytes until sent, failed or
    /// interrupted (docs/contract.md, "Limits per user"). nil: the writer is
    /// at or over its limit, and the write is refused (EDQUOT) rather than
    /// held. A relayed group's sends wait for their stream's acknowledgement,
    /// not for room, and are not charged.
    func hold(_ count: Int, for writer: Credentials, in group: Group) -> HeldBytes? {
        guard !group.isRelayed else { return HeldBytes(nil, 0) }
        let account = users.account(for: writer.uid)
        guard account.mayHold else { return nil }
        account.hold(count)
        return HeldBytes(account, count)
    }

    /// Readiness of an open file. A member file is readable when a message
    /// is queued or the member left; member files and `send` are writable when
    /// a write would not wait. `notify`, if given, runs once when that may
    /// have changed. Other files are always ready, as regular files are.
    public func poll(handle: UInt64, notify: (@Sendable () -> Void)?) -> Readiness {
        let file = OpenFile.of(handle)
        let watch = notify.map { Watch(id: file.watchID, notify: $0) }
        switch file.content {
        case .member(let member, let reader, let writable):
            return member.group.poll(reader: reader, writer: writable ? .member(member) : nil, watch: watch)
        case .peer(let member, let reader, let writable):
            return member.group.poll(reader: reader, writer: writable ? .peer(member) : nil, watch: watch)
        case .send(let group):
            return group.poll(reader: nil, writer: .anonymous, watch: watch)
        case .control, .status, .directory:
            return Readiness(readable: true, writable: true)
        }
    }
}

/// Bytes held for a writer (`hold`), released once.
struct HeldBytes: Sendable {
    let account: Account?
    let count: Int

    init(_ account: Account?, _ count: Int) {
        self.account = account
        self.count = count
    }

    /// Called exactly once: by the completion, or when the wait ended
    /// without it.
    func release() { account?.unhold(count) }
}
