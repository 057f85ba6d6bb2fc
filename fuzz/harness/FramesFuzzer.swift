import MulticastFS
import SystemPackage

/// The framed view's batch parser, `FrameFormat.records(in:maxMessage:)`:
/// it accepts exactly the well-formed batches (docs/contract.md, "The framed
/// view": records back to back, each a little-endian u32 length, not 0, and
/// that many bytes), returns their payloads in order, puts structure before
/// size (EINVAL before EMSGSIZE), and reads nothing outside the batch (the
/// address sanitizer watches libFuzzer's exact-size copy).
enum FramesFuzzer {
    @Sendable static func check(_ input: UnsafeRawBufferPointer) {
        checkBatch(input)
        // Random bytes are seldom a batch (their lengths are huge): also make
        // one of the input's pieces, and cut it short.
        checkEncoded(pieces: Array(input).split(separator: 0xff, omittingEmptySubsequences: true).map(Array.init),
                     cut: input.count)
    }

    /// What a batch is, written from the contract: the payloads, or nil.
    static func reference(_ batch: [UInt8]) -> [[UInt8]]? {
        var payloads: [[UInt8]] = []
        var rest = batch[...]
        while !rest.isEmpty {
            guard rest.count >= 4 else { return nil }
            let length = rest.prefix(4).reversed().reduce(0) { $0 << 8 | Int($1) }
            rest = rest.dropFirst(4)
            guard length > 0, length <= rest.count else { return nil }
            payloads.append(Array(rest.prefix(length)))
            rest = rest.dropFirst(length)
        }
        return payloads.isEmpty ? nil : payloads
    }

    static func encode(_ payloads: [[UInt8]]) -> [UInt8] {
        payloads.flatMap { payload in withUnsafeBytes(of: UInt32(payload.count).littleEndian, Array.init) + payload }
    }

    static func parse(_ batch: UnsafeRawBufferPointer, maxMessage: Int) -> Result<[Range<Int>], Errno> {
        Result { () throws(Errno) in try FrameFormat.records(in: batch, maxMessage: maxMessage) }
    }

    static func checkBatch(_ batch: UnsafeRawBufferPointer) {
        let bytes = Array(batch)
        let expected = reference(bytes)
        switch parse(batch, maxMessage: Int.max) {
        case .success(let records):
            guard let expected else { return require(false, "accepted \(show(bytes)), which is no batch") }
            // In bounds, in order, back to back after their lengths; and the
            // payloads encoded again are the batch.
            var next = 0
            for record in records {
                require(record.lowerBound == next + 4 && record.upperBound <= batch.count && !record.isEmpty,
                        "record \(record) of \(show(bytes)) after \(next)")
                next = record.upperBound
            }
            require(next == batch.count, "records of \(show(bytes)) end at \(next)")
            let payloads = records.map { Array(batch[$0]) }
            require(payloads == expected, "\(show(bytes)): records \(records), the contract's \(expected.map(\.count))")
            require(encode(payloads) == bytes, "\(show(bytes)) is not its records encoded again")
            // max_message: the longest record fits exactly, one byte less is EMSGSIZE.
            let longest = payloads.map(\.count).max()!
            require((try? parse(batch, maxMessage: longest).get()) == records, "\(show(bytes)) refused at max_message \(longest)")
            if case .failure(let error) = parse(batch, maxMessage: longest - 1) {
                require(error == .messageTooLong, "\(show(bytes)) at max_message \(longest - 1): \(error), not EMSGSIZE")
            } else {
                require(false, "\(show(bytes)) accepted at max_message \(longest - 1), with a record of \(longest)")
            }
        case .failure(let error):
            require(expected == nil, "refused \(show(bytes)) (\(error)), a batch of \(expected?.map(\.count) ?? [])")
            require(error == .invalidArgument, "\(show(bytes)): \(error), not EINVAL")
            // Not a batch: EINVAL whatever max_message is (structure first).
            if case .failure(let small) = parse(batch, maxMessage: 1) {
                require(small == .invalidArgument, "\(show(bytes)) at max_message 1: \(small), not EINVAL")
            } else {
                require(false, "\(show(bytes)) accepted at max_message 1")
            }
        }
    }

    /// A batch of `pieces`, whole and cut at every length derived from `cut`.
    static func checkEncoded(pieces: [[UInt8]], cut: Int) {
        guard !pieces.isEmpty else { return }
        let batch = encode(pieces)
        withExactCopy(batch) { raw in
            require((try? parse(raw, maxMessage: Int.max).get())?.map { Array(raw[$0]) } == pieces,
                    "the batch of \(pieces.map(\.count)) did not parse back")
        }
        // Cut anywhere, it is a batch exactly at a record's end.
        var ends: Set<Int> = []
        var end = 0
        for piece in pieces {
            end += 4 + piece.count
            ends.insert(end)
        }
        for length in Set([cut % batch.count, batch.count - 1, batch.count - 1 - cut % 4, 1, 3, 4, 5]) where length > 0 && length < batch.count {
            withExactCopy(Array(batch[..<length])) { raw in
                let accepted = (try? parse(raw, maxMessage: Int.max).get()) != nil
                require(accepted == ends.contains(length), "the batch of \(pieces.map(\.count)) cut at \(length): accepted \(accepted)")
            }
        }
    }
}

/// Runs `body` over a heap copy of exactly `bytes.count` bytes, so that the
/// address sanitizer sees a read past the end (an array may have spare
/// capacity after its bytes).
func withExactCopy<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
    defer { copy.deallocate() }
    copy.copyBytes(from: bytes)
    return body(UnsafeRawBufferPointer(rebasing: copy[..<bytes.count]))
}
