internal import CNATS
import Glibc

/// C copies of Swift strings that live until the arena is dropped: nats.c's
/// config structs hold several `const char *` at once, which nested
/// `withCString` closures cannot express neatly.
final class CStrings {
    private var owned: [UnsafeMutablePointer<CChar>] = []

    func copy(_ string: String) -> UnsafePointer<CChar> {
        let p = strdup(string)!
        owned.append(p)
        return UnsafePointer(p)
    }

    func copy(_ string: String?) -> UnsafePointer<CChar>? {
        string.map { copy($0) }
    }

    /// A C array of C strings (for `Subjects`); lives as long as the arena.
    func copy(_ strings: [String]) -> UnsafeMutablePointer<UnsafePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(strings.count, 1))
        for (i, s) in strings.enumerated() { array[i] = copy(s) }
        arrays.append(array)
        return array
    }
    private var arrays: [UnsafeMutablePointer<UnsafePointer<CChar>?>] = []

    deinit {
        for p in owned { free(p) }
        for a in arrays { a.deallocate() }
    }
}

func string(_ p: UnsafePointer<CChar>?) -> String? { p.map { String(cString: $0) } }
func string(_ p: UnsafeMutablePointer<CChar>?) -> String? { p.map { String(cString: $0) } }
/// A NUL-terminated string that nats.c wrote into `buffer`.
func string(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension Duration {
    /// Whole nanoseconds, as JetStream configs count time.
    var inNanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }

    /// Whole milliseconds (rounded up, so a short positive wait stays
    /// positive), as nats.c's call timeouts count time.
    var inMilliseconds: Int64 {
        let ns = inNanoseconds
        return ns <= 0 ? 0 : (ns + 999_999) / 1_000_000
    }
}
