// The fuzzers' one executable (docs/fuzzing.md). Each fuzzer checks
// properties of one parser and aborts when one fails; libFuzzer (or the
// address sanitizer) then keeps the input that did it.
//
// Built with `-sanitize=fuzzer -DFUZZING` (scripts/fuzz), libFuzzer's main
// drives it and MCASTFS_FUZZ names the fuzzer. Built plainly (every `swift
// build`), it replays inputs: `mcastfs-fuzz NAME FILE...`.
import Glibc

/// The fuzzers, by the name scripts/fuzz and the corpus directories use.
let fuzzers: [String: @Sendable (UnsafeRawBufferPointer) -> Void] = [
    "frames": FramesFuzzer.check,
    "lines": LinesFuzzer.check,
    "ctl": ControlFuzzer.check,
    "patterns": PatternsFuzzer.check,
]

/// A property that does not hold: says which and why, then aborts, which
/// libFuzzer reports as a crash and keeps the input of.
func require(_ condition: Bool, _ what: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    guard !condition else { return }
    printError("property failed (\(file):\(line)): \(what())")
    abort()
}

/// A line on standard error (write(2): `stderr` is a C global, shared
/// mutable state to Swift 6).
func printError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Bytes for the failure messages: printable ASCII as it is, any other
/// byte as `\u{XX}` (bytes, not scalars: UTF-8 shows as its bytes).
func show(_ bytes: some Collection<UInt8>) -> String {
    var text = "\""
    for byte in bytes.prefix(300) {
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): text += "\\" + String(UnicodeScalar(byte))
        case 0x20..<0x7f: text += String(UnicodeScalar(byte))
        default: text += "\\u{\(String(byte, radix: 16))}"
        }
    }
    return text + (bytes.count > 300 ? "\"... (\(bytes.count) bytes)" : "\"")
}

#if FUZZING
// Set once, in LLVMFuzzerInitialize, before libFuzzer's one thread runs inputs.
nonisolated(unsafe) private var selected: (@Sendable (UnsafeRawBufferPointer) -> Void)?

@_cdecl("LLVMFuzzerInitialize")
func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>) -> Int32 {
    let name = getenv("MCASTFS_FUZZ").map { String(cString: $0) } ?? ""
    guard let fuzzer = fuzzers[name] else {
        printError("mcastfs-fuzz: set MCASTFS_FUZZ to one of \(fuzzers.keys.sorted().joined(separator: " "))")
        exit(2)
    }
    selected = fuzzer
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    // libFuzzer's own copy, exactly `size` bytes long: the address
    // sanitizer catches a read past its end.
    selected!(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
enum Replay {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let fuzzer = fuzzers[name] else {
            printError("usage: mcastfs-fuzz NAME FILE... (NAME: \(fuzzers.keys.sorted().joined(separator: " ")))")
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let bytes = read(path) else {
                printError("mcastfs-fuzz: cannot read \(path)")
                exit(1)
            }
            // An exact-size heap copy, as libFuzzer gives.
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            copy.copyBytes(from: bytes)
            fuzzer(UnsafeRawBufferPointer(copy))
            copy.deallocate()
        }
        print("\(name): \(arguments.count - 1) inputs, every property held")
    }

    private static func read(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count == 0 { break }
            bytes += buffer[..<count]
        }
        return ferror(file) == 0 ? bytes : nil
    }
}
#endif
