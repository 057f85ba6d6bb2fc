import DeliveryCore
package import SystemPackage

/// The framed view's two encodings (docs/contract.md, "The framed view").
///
/// A batch, as written: records back to back, each a little-endian u32
/// length and that many bytes of payload. A frame, as read: a 40-byte
/// little-endian header, the sender's name, the payload, and zero padding to
/// the next multiple of 8:
///
///     0 size u32 · 4 header_size u16 · 6 name_size u8 · 7 flags u8 ·
///     8 sequence u64 · 16 time u64 · 24 pid u32 · 28 uid u32 · 32 gid u32 ·
///     36 dropped u32 · 40 name · payload · padding
package enum FrameFormat {
    static let headerSize = 40
    static let alignment = 8
    /// `flags` bit 0: sent to this member alone.
    static let privateFlag: UInt8 = 1

    /// The payloads of a batch's records, in order, as ranges of `batch`.
    ///
    /// The whole batch is checked before anything is sent: a zero length, a
    /// record that runs past the end, or bytes left over that make no whole
    /// record are EINVAL; then a payload longer than `maxMessage` is
    /// EMSGSIZE. Structure first, so that bytes that are not a batch at all
    /// (whose "lengths" are usually huge) get EINVAL. (`package`: the batch
    /// fuzzer calls it, fuzz/harness.)
    package static func records(in batch: UnsafeRawBufferPointer, maxMessage: Int) throws(Errno) -> [Range<Int>] {
        var records: [Range<Int>] = []
        var offset = 0
        var longest = 0
        while offset < batch.count {
            guard batch.count - offset >= 4 else { throw .invalidArgument }
            let length = Int(loadLittleEndianUInt32(batch, at: offset))
            let start = offset + 4
            guard length > 0, length <= batch.count - start else { throw .invalidArgument }
            records.append(start..<start + length)
            longest = max(longest, length)
            offset = start + length
        }
        guard !records.isEmpty else { throw .invalidArgument }
        guard longest <= maxMessage else { throw .messageTooLong }
        return records
    }

    /// How the core counts a message against a read buffer of frames.
    static let receiveFraming = ReceiveFraming(headerBytes: headerSize, carriesSenderName: true, alignment: alignment)

    /// The bytes a frame takes in a read buffer, padding included.
    static func frameSize(payload: Int, nameSize: Int) -> Int {
        (headerSize + nameSize + payload + alignment - 1) / alignment * alignment
    }

    static func frameSize(of chunk: MessageChunk) -> Int {
        frameSize(payload: chunk.count, nameSize: chunk.message.senderName?.utf8.count ?? 0)
    }

    /// Writes `chunk`'s frame at `offset` (a multiple of 8) of `buffer`, which
    /// has room for it, padding zeroed; returns where the next frame starts.
    static func encode(_ chunk: MessageChunk, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        guard var name = chunk.message.senderName else {
            return encode(chunk, name: UnsafeRawBufferPointer(start: nil, count: 0), into: buffer, at: offset)
        }
        return name.withUTF8 { encode(chunk, name: UnsafeRawBufferPointer($0), into: buffer, at: offset) }
    }

    private static func encode(_ chunk: MessageChunk, name: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer,
                               at offset: Int) -> Int {
        let message = chunk.message
        let size = frameSize(payload: chunk.count, nameSize: name.count)
        let frame = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + size])
        let credentials = message.credentials
        frame.storeLittleEndian(UInt32(chunk.count), at: 0)
        frame.storeLittleEndian(UInt16(headerSize + name.count), at: 4)
        frame.storeBytes(of: UInt8(name.count), toByteOffset: 6, as: UInt8.self)
        frame.storeBytes(of: message.isPrivate ? privateFlag : 0, toByteOffset: 7, as: UInt8.self)
        frame.storeLittleEndian(message.sequence, at: 8)
        frame.storeLittleEndian(message.time, at: 16)
        frame.storeLittleEndian(credentials.pid, at: 24)
        frame.storeLittleEndian(credentials.uid, at: 28)
        frame.storeLittleEndian(credentials.gid, at: 32)
        frame.storeLittleEndian(chunk.droppedBefore, at: 36)
        let base = frame.baseAddress!
        if let nameBase = name.baseAddress, name.count > 0 {
            base.advanced(by: headerSize).copyMemory(from: nameBase, byteCount: name.count)
        }
        let payloadEnd = headerSize + name.count + chunk.count
        chunk.copyBytes(to: base.advanced(by: headerSize + name.count))
        if payloadEnd < size { base.advanced(by: payloadEnd).initializeMemory(as: UInt8.self, repeating: 0, count: size - payloadEnd) }
        return offset + size
    }

    private static func loadLittleEndianUInt32(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    fileprivate func storeLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
