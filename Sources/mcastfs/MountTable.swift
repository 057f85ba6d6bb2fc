import Glibc

/// The mount table, from /proc/self/mountinfo.
enum MountTable {
    static func isMountPoint(_ path: String) -> Bool {
        fileSystemType(at: path) != nil
    }

    /// The type of the topmost mount on `path` (an absolute path without
    /// symlinks), e.g. "fuse.mcastfs"; nil when nothing is mounted there.
    static func fileSystemType(at path: String) -> String? {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        var type: String?
        while getline(&line, &capacity, file) > 0, let line {
            // Field 5 is the mount point, with spaces and the like as octal
            // escapes; the type follows the optional fields' " - ". Later
            // lines are mounted over earlier ones.
            let fields = String(cString: line).split(separator: " ")
            if fields.count > 4, unescape(fields[4]) == path,
               let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count {
                type = String(fields[dash + 1])
            }
        }
        return type
    }

    /// `path` made absolute, symlinks resolved (unchanged if it cannot be).
    static func absolute(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
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
