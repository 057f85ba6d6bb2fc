import SystemPackage

/// The contract's rules for group and member names: 1 to 255 bytes of UTF-8,
/// no `/`, NUL, whitespace or control characters, not starting with `.`.
/// Too long is ENAMETOOLONG; anything else that breaks them is EINVAL.
enum Names {
    static let maxBytes = 255
    /// Names a group directory keeps for its own files.
    static let reserved: Set<String> = ["send", "ctl", "status", "frames", "peers"]

    static func validate(_ name: String) throws(Errno) {
        let length = name.utf8.count
        guard length > 0 else { throw .invalidArgument }
        guard length <= maxBytes else { throw .fileNameTooLong }
        // By byte: `hasPrefix` compares characters, and "." followed by a
        // combining mark is one character that is not ".".
        guard name.utf8.first != UInt8(ascii: ".") else { throw .invalidArgument }
        for scalar in name.unicodeScalars {
            if scalar == "/" || scalar == "\0" || scalar.properties.isWhitespace
                || scalar.properties.generalCategory == .control {
                throw .invalidArgument
            }
        }
    }
}
