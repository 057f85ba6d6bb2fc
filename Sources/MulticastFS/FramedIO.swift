import DeliveryCore
import SystemPackage

// Reads and writes of the framed view (`G/frames/`): many messages per
// request, each with its metadata. docs/contract.md, "The framed view".

extension MulticastFilesystem {
    /// read(2) on `G/frames/NAME`: as many whole frames as fit in `size`
    /// bytes, at least one, oldest first; waits on an empty queue (EAGAIN
    /// when `nonBlocking`); EMSGSIZE, consuming nothing, when the first frame
    /// does not fit; end of file once the member left and its queue drained.
    func readFrames(from reader: Reader, size: Int, nonBlocking: Bool, reply: some ReadReply) {
        // The core counts each message as its frame, so the batch is what
        // fits the buffer; a first frame larger than the buffer is refused
        // there, under the group's lock, so that nothing is taken.
        let maxMessages = max(1, size / FrameFormat.frameSize(payload: 1, nameSize: 0))
        let framing = FrameFormat.receiveFraming
        do throws(DeliveryError) {
            Self.hand(try reader.tryReceiveBatch(maxMessages: maxMessages, maxBytes: size, framing: framing),
                      of: reader, size: size, to: reply)
        } catch .wouldBlock where !nonBlocking {
            Self.wait(reply) {
                reader.receiveBatch(maxMessages: maxMessages, maxBytes: size, framing: framing, .blocking) { result in
                    switch result {
                    case .success(let received): Self.hand(received, of: reader, size: size, to: reply)
                    case .failure(let error): reply.fail(Errno(error))
                    }
                }
            }
        } catch {
            reply.fail(Errno(error))
        }
    }

    private static func hand(_ received: Received, of reader: Reader, size: Int, to reply: some ReadReply) {
        guard !received.isEndOfStream else {
            _ = reply.reply(UnsafeRawBufferPointer(start: nil, count: 0))
            return
        }
        // The core took what fits, counting each message as its frame, and
        // refused (EMSGSIZE, consuming nothing) a first frame that does not.
        let bytes = received.reduce(0) { $0 + FrameFormat.frameSize(of: $1) }
        guard bytes <= size else {
            assertionFailure("FramedIO: the core's framing and FrameFormat disagree")
            reader.putBack(received)
            return reply.fail(.messageTooLong)
        }
        let delivered = withUnsafeTemporaryAllocation(byteCount: bytes, alignment: FrameFormat.alignment) { buffer in
            var offset = 0
            for chunk in received { offset = FrameFormat.encode(chunk, into: buffer, at: offset) }
            return reply.reply(UnsafeRawBufferPointer(buffer))
        }
        // The requester died before the hand-over: nothing is lost.
        if !delivered { reader.putBack(received) }
    }

    /// write(2) on `G/frames/send` or `G/frames/NAME`: a batch of records,
    /// delivered as the longest prefix every blocking recipient can take, at
    /// least one message (waiting for that one, or EAGAIN when
    /// `nonBlocking`). Answers the bytes of the records delivered.
    func writeBatch(_ bytes: UnsafeRawBufferPointer, to group: Group, as sender: Member?, writer: Credentials,
                    nonBlocking: Bool, reply: some WriteReply) {
        let records: [Range<Int>]
        // The parser checks the structure; the core checks every size
        // against max_message, under its lock, before delivering any.
        do throws(Errno) { records = try FrameFormat.records(in: bytes, maxMessage: .max) } catch {
            return reply.fail(error)
        }
        let messages = records.map { Message(copying: UnsafeRawBufferPointer(rebasing: bytes[$0]), credentials: writer) }
        // Records are back to back from the start: the first k end where the
        // k-th record's payload ends.
        let written = { @Sendable (delivered: Int) -> Int in delivered == 0 ? 0 : records[delivered - 1].upperBound }
        do throws(DeliveryError) {
            reply.reply(written: written(try group.trySend(batch: messages, as: sender).delivered))
        } catch .wouldBlock where !nonBlocking || group.isRelayed {
            guard let held = hold(records.reduce(0) { $0 + $1.count }, for: writer, in: group) else {
                return reply.fail(.diskQuotaExceeded)
            }
            Self.wait(reply, dropped: held.release) {
                group.send(batch: messages, as: sender, nonBlocking ? .nonBlocking : .blocking) { result in
                    held.release()
                    switch result {
                    case .success(let receipt): reply.reply(written: written(receipt.delivered))
                    case .failure(let error): reply.fail(Errno(error))
                    }
                }
            }
        } catch {
            reply.fail(Errno(error))
        }
    }
}
