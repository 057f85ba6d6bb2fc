import MulticastFS

/// The line splitter, `LineCut`, as `writeLines` uses it (docs/contract.md,
/// "Line messages"): a stream of writes, some of them answered short or not
/// at all and sent again as a writer does, then a close. The messages are
/// the lines, each with one newline, at its end; the last may lack it (the
/// tail close sends); none is empty; and joined they give back the bytes
/// written, each once.
///
/// Input: byte 0 is how many of the next bytes say how the stream is written
/// (at most 15); each of them is a write's length (its low 7 bits, the rest
/// of the input when 127) and whether it is answered short (bit 7); the rest
/// of the input is the bytes.
enum LinesFuzzer {
    @Sendable static func check(_ input: UnsafeRawBufferPointer) {
        guard let first = input.first else { return }
        let plan = Array(input.dropFirst().prefix(Int(first % 16)))
        let stream = Array(input.dropFirst(1 + plan.count))
        var messages: [[UInt8]] = []
        var pending: [UInt8] = []
        var offset = 0
        var step = 0
        var shortAnswers = 0
        while offset < stream.count || step < plan.count {
            let how = step < plan.count ? plan[step] : 0x7f
            step += 1
            let length = how & 0x7f == 0x7f ? stream.count - offset : min(Int(how & 0x7f), stream.count - offset)
            let write = Array(stream[offset..<offset + length])
            let cut = withExactCopy(write) { LineCut(carried: pending, $0) }
            checkCut(cut, pending: pending, write: write)
            // The writer's view: all lines in, a short count (some in), or
            // none in (EAGAIN or EINTR: the writer writes the same bytes again).
            let delivered: Int
            if how & 0x80 != 0 && shortAnswers < 64 {
                shortAnswers += 1
                delivered = cut.lines.count / 2
                if delivered == 0 && !cut.lines.isEmpty { step -= 1 }  // none in: the same write again
            } else {
                delivered = cut.lines.count
            }
            for line in cut.lines.prefix(delivered) { messages.append(Array(cut.text[line])) }
            if delivered == cut.lines.count {
                pending = Array(cut.text[cut.tail])
                offset += length
            } else if delivered > 0 {
                // A short count: nothing of this write is kept; the writer sends the rest.
                let written = cut.written(byLines: delivered)
                require(written > 0 && written < length, "short count \(written) of \(length)")
                pending = []
                offset += written
            }
            // None in: what waited before stays, and the same bytes come again.
        }
        if !pending.isEmpty { messages.append(pending) }  // close sends the tail

        require(Array(messages.joined()) == stream, "the messages of \(show(stream)) joined are \(show(Array(messages.joined())))")
        for (index, message) in messages.enumerated() {
            require(!message.isEmpty, "an empty message from \(show(stream))")
            let newlines = message.indices.filter { message[$0] == UInt8(ascii: "\n") }
            let last = index == messages.count - 1
            require(newlines == [message.count - 1] || (last && newlines.isEmpty),
                    "message \(index) \(show(message)) of \(show(stream))")
        }
    }

    /// One cut, against the bytes it was made of.
    static func checkCut(_ cut: LineCut, pending: [UInt8], write: [UInt8]) {
        require(cut.text == pending + write && cut.carried == pending.count, "text of \(show(pending)) + \(show(write))")
        var start = 0
        for line in cut.lines {
            require(line.lowerBound == start && line.upperBound <= cut.text.count, "line \(line) after \(start)")
            require(cut.text[line].firstIndex(of: UInt8(ascii: "\n")) == line.upperBound - 1,
                    "line \(show(cut.text[line])) of \(show(cut.text))")
            start = line.upperBound
        }
        require(cut.tail == start..<cut.text.count, "tail \(cut.tail), lines end at \(start)")
        require(!cut.text[cut.tail].contains(UInt8(ascii: "\n")), "a newline in the tail of \(show(cut.text))")
        require(cut.longest == max(cut.lines.map(\.count).max() ?? 0, cut.tail.count), "longest of \(show(cut.text))")
        // What each count of lines takes of this write: none for none, then
        // growing, and every byte for every line when the tail is empty.
        var previous = 0
        for count in 0...cut.lines.count {
            let written = cut.written(byLines: count)
            require(written >= previous && written <= write.count, "written(byLines: \(count)) = \(written) of \(write.count)")
            if count > 0 {
                require(written == cut.lines[count - 1].upperBound - pending.count, "written(byLines: \(count)) = \(written)")
            }
            previous = written
        }
        require(cut.written(byLines: cut.lines.count) + cut.tail.count == write.count || cut.lines.isEmpty,
                "written(every line) + tail of \(show(cut.text)) is not the write")
    }
}
