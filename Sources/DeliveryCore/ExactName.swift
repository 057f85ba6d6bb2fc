/// A name compared byte for byte.
///
/// Swift's `String` equality is canonical equivalence: "café" spelled with
/// one code point equals "cafe\u{301}". Names of groups and members are file
/// names, and file names are bytes: two spellings are two names, as on any
/// Linux filesystem. Use this as the key wherever names are looked up.
public struct ExactName: Hashable, Sendable, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }

    public static func == (lhs: ExactName, rhs: ExactName) -> Bool {
        lhs.string.utf8.elementsEqual(rhs.string.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        let hashed: Void? = string.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil {
            for byte in string.utf8 { hasher.combine(byte) }
        }
    }

    public var description: String { string }
}
