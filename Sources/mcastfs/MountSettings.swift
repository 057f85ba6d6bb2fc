import DeliveryCore

/// The -o options, split into mcastfs's own (group defaults) and FUSE's.
struct MountSettings {
    var groupDefaults = GroupSettings()
    var fuseOptions: [String] = []
    var debug = false

    init(options: [String], debug: Bool) throws {
        self.debug = debug
        for option in options.flatMap({ $0.split(separator: ",", omittingEmptySubsequences: true) }) {
            let parts = option.split(separator: "=", maxSplits: 1)
            let key = String(parts[0]), value = parts.count > 1 ? String(parts[1]) : nil
            switch key {
            case "capacity": groupDefaults.capacity = try number(key, value, Limits.capacity)
            case "queue_bytes": groupDefaults.queueBytes = try number(key, value, Limits.queueBytes)
            case "max_message": groupDefaults.maxMessage = try number(key, value, Limits.maxMessage)
            case "default_permissions": break  // always on
            default: fuseOptions.append(String(option))
            }
        }
    }

    /// Arguments for the FUSE session: permission checks by the kernel always.
    var fuseArguments: [String] {
        let all = ["default_permissions", "fsname=mcastfs", "subtype=mcastfs"] + fuseOptions
        return ["-o", all.joined(separator: ",")] + (debug ? ["-d"] : [])
    }

    private func number(_ key: String, _ value: String?, _ range: ClosedRange<Int>) throws -> Int {
        guard let value, value.allSatisfy(\.isASCII), value.allSatisfy(\.isNumber), let number = Int(value), range.contains(number) else {
            throw StartupFailure(message: "bad option \(key)=\(value ?? ""): expected a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }
}
