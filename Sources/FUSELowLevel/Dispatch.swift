import CFuse
import Glibc
import FileSystemTypes
import SystemPackage

// The index of the layer: one `fuse_lowlevel_ops` table, one C callback per
// operation, each turning libfuse's arguments into Swift values and a typed
// reply and calling the filesystem.
//
// Threads: every request callback runs on a libfuse loop thread — the
// thread in `FUSESession.run` (single-threaded) or one of the workers
// `fuse_session_loop_mt` starts. Unless noted, the reply may be answered
// inside the callback or later from any thread. `fi`, `name` and buffers are
// valid only during the callback; everything kept is copied here (strings,
// fh, flags) or documented as borrowed (write data, xattr values).
// `forget` and `forget_multi` have no reply: they call fuse_reply_none here.

func makeOperationTable() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()

    /// FUSE_INIT, on a loop thread, before any request. `userdata` is the
    /// session's core.
    ops.`init` = { userdata, conn in
        guard let userdata, let conn else { return }
        let core = Unmanaged<SessionCore>.fromOpaque(userdata).takeUnretainedValue()
        var settings = ConnectionSettings(conn.pointee)
        core.operations.initialize(&settings)
        settings.apply(to: &conn.pointee)
    }

    /// From fuse_session_destroy, on the thread calling `FUSESession.destroy`.
    ops.destroy = { userdata in
        guard let userdata else { return }
        Unmanaged<SessionCore>.fromOpaque(userdata).takeUnretainedValue().operations.destroy()
    }

    /// No reply: answered with fuse_reply_none before returning.
    ops.forget = { req, ino, nlookup in
        guard let req else { return }
        SessionCore.of(req).operations.forget(ino: ino, lookups: nlookup)
        fuse_reply_none(req)
    }

    /// No reply: each entry goes to `forget`, then fuse_reply_none.
    ops.forget_multi = { req, count, forgets in
        guard let req else { return }
        let operations = SessionCore.of(req).operations
        if let forgets {
            for item in UnsafeBufferPointer(start: forgets, count: count) {
                operations.forget(ino: item.ino, lookups: item.nlookup)
            }
        }
        fuse_reply_none(req)
    }

    ops.lookup = { req, parent, name in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEntry.self)
        guard let name = decode(name) else { reply.error(.noSuchFileOrDirectory); return }
        core.operations.lookup(RequestContext(req), parent: parent, name: name, reply: reply)
    }

    ops.getattr = { req, ino, _ in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyAttributes.self)
        core.operations.getattr(RequestContext(req), ino: ino, reply: reply)
    }

    ops.setattr = { req, ino, attr, toSet, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyAttributes.self)
        let changes = attr.map { AttributeChanges(attr: $0.pointee, toSet: toSet) } ?? AttributeChanges()
        core.operations.setattr(RequestContext(req), ino: ino, changes: changes, fh: fi?.pointee.fh, reply: reply)
    }

    ops.readlink = { req, ino in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyReadlink.self)
        core.operations.readlink(RequestContext(req), ino: ino, reply: reply)
    }

    ops.mknod = { req, parent, name, mode, rdev in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEntry.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.mknod(RequestContext(req), parent: parent, name: name, mode: FileMode(rawValue: mode), device: UInt64(rdev), reply: reply)
    }

    ops.mkdir = { req, parent, name, mode in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEntry.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.mkdir(RequestContext(req), parent: parent, name: name, mode: FileMode(rawValue: mode), reply: reply)
    }

    ops.unlink = { req, parent, name in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.unlink(RequestContext(req), parent: parent, name: name, reply: reply)
    }

    ops.rmdir = { req, parent, name in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.rmdir(RequestContext(req), parent: parent, name: name, reply: reply)
    }

    ops.symlink = { req, link, parent, name in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEntry.self)
        guard let target = decode(link), let name = decode(name) else { reply.error(undecodable(name, link)); return }
        core.operations.symlink(RequestContext(req), target: target, parent: parent, name: name, reply: reply)
    }

    ops.rename = { req, parent, name, newParent, newName, flags in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        guard let name = decode(name), let newName = decode(newName) else { reply.error(undecodable(name, newName)); return }
        core.operations.rename(
            RequestContext(req), parent: parent, name: name, newParent: newParent, newName: newName,
            flags: flags, reply: reply)
    }

    ops.link = { req, ino, newParent, newName in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEntry.self)
        guard let newName = decode(newName) else { reply.error(undecodable(newName)); return }
        core.operations.link(RequestContext(req), ino: ino, newParent: newParent, newName: newName, reply: reply)
    }

    ops.open = { req, ino, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyOpen.self)
        core.operations.open(RequestContext(req), ino: ino, flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    ops.create = { req, parent, name, mode, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyCreate.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.create(
            RequestContext(req), parent: parent, name: name, mode: FileMode(rawValue: mode), flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    /// The reply may come much later (a blocked read); arm interrupts first.
    ops.read = { req, ino, size, offset, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyData.self)
        core.operations.read(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, size: size, offset: Int64(offset),
            flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    /// `buf` is libfuse's receive buffer, reused after this returns.
    ops.write = { req, ino, buf, size, offset, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyWrite.self)
        core.operations.write(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0,
            data: UnsafeRawBufferPointer(start: buf, count: buf == nil ? 0 : size), offset: Int64(offset),
            flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    ops.flush = { req, ino, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.flush(RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, reply: reply)
    }

    ops.release = { req, ino, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.release(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    ops.fsync = { req, ino, datasync, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.fsync(RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, dataOnly: datasync != 0, reply: reply)
    }

    ops.opendir = { req, ino, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyOpen.self)
        core.operations.opendir(RequestContext(req), ino: ino, flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    ops.readdir = { req, ino, size, offset, fi in
        guard let req else { return }
        let core = SessionCore.of(req)
        let reply = ReplyDirectory(request: RequestHandle(raw: req), session: core, capacity: size)
        core.operations.readdir(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, size: size, offset: Int64(offset), reply: reply)
    }

    ops.releasedir = { req, ino, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.releasedir(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, flags: OpenFlags(rawValue: fi?.pointee.flags ?? 0), reply: reply)
    }

    ops.fsyncdir = { req, ino, datasync, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.fsyncdir(RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, dataOnly: datasync != 0, reply: reply)
    }

    ops.statfs = { req, ino in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyStatfs.self)
        core.operations.statfs(RequestContext(req), ino: ino, reply: reply)
    }

    /// `value` is borrowed for the call.
    ops.setxattr = { req, ino, name, value, size, flags in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.setxattr(
            RequestContext(req), ino: ino, name: name,
            value: UnsafeRawBufferPointer(start: value, count: value == nil ? 0 : size), flags: flags, reply: reply)
    }

    ops.getxattr = { req, ino, name, size in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyXattr.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.getxattr(RequestContext(req), ino: ino, name: name, size: size, reply: reply)
    }

    ops.listxattr = { req, ino, size in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyXattr.self)
        core.operations.listxattr(RequestContext(req), ino: ino, size: size, reply: reply)
    }

    ops.removexattr = { req, ino, name in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        guard let name = decode(name) else { reply.error(undecodable(name)); return }
        core.operations.removexattr(RequestContext(req), ino: ino, name: name, reply: reply)
    }

    ops.access = { req, ino, mask in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.access(RequestContext(req), ino: ino, mask: mask, reply: reply)
    }

    ops.fallocate = { req, ino, mode, offset, length, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyEmpty.self)
        core.operations.fallocate(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, mode: mode, offset: Int64(offset),
            length: Int64(length), reply: reply)
    }

    ops.lseek = { req, ino, offset, whence, fi in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyLseek.self)
        core.operations.lseek(
            RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, offset: Int64(offset), whence: whence, reply: reply)
    }

    /// Answer at once. `ph` exists only when the kernel asked for a
    /// notification; the PollHandle owns it from here.
    ops.poll = { req, ino, fi, ph in
        guard let req else { return }
        let (core, reply) = prepare(req, ReplyPoll.self)
        let handle = ph.map { PollHandle(handle: PollHandlePointer(raw: $0), session: core) }
        core.operations.poll(RequestContext(req), ino: ino, fh: fi?.pointee.fh ?? 0, handle: handle, reply: reply)
    }

    return ops
}

/// The session's core and a fresh reply for `req`.
private func prepare<R: Reply>(_ req: fuse_req_t, _ type: R.Type) -> (SessionCore, R) {
    let core = SessionCore.of(req)
    return (core, R(request: RequestHandle(raw: req), session: core))
}

/// Why names could not be decoded: a name longer than NAME_MAX (255 bytes) is
/// ENAMETOOLONG whatever its bytes, as the length is checked first on Linux;
/// otherwise it is not UTF-8 (or absent): EINVAL.
private func undecodable(_ names: UnsafePointer<CChar>?...) -> Errno {
    names.contains { $0.map { strlen($0) > Int(NAME_MAX) } ?? false } ? .fileNameTooLong : .invalidArgument
}

/// A name from the kernel as a String; nil if absent or not valid UTF-8.
private func decode(_ name: UnsafePointer<CChar>?) -> String? {
    guard let name else { return nil }
    return String(validatingCString: name)
}
