import Glibc

/// The mount table, from /proc/self/mountinfo.
enum MountTable {
    static func isMountPoint(_ path: String) -> Bool {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return false }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            // Field 5 is the mount point, with spaces and the like as octal escapes.
            let fields = String(cString: line).split(separator: " ")
            if fields.count > 4, unescape(fields[4]) == path { return true }
        }
        return false
    }

    private static func unescape(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var iterator = Array(field.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "\\"), iterator.count >= 3,
               let value = UInt8(String(decoding: iterator.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                iterator = iterator.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
