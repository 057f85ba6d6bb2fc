// swift-tools-version:6.0
//
// The layering, from the bottom up:
//   Locking       — the one lock every module uses (a glibc adaptive mutex;
//                   Sources/Locking says why not Synchronization.Mutex).
//   DeliveryCore  — every rule of delivery; pure Swift, no FUSE, no paths, no errno.
//   MulticastFS   — the filesystem contract mapped onto the core (inodes, names,
//                   modes, ctl grammar, status format, errno); no libfuse either,
//                   so tests drive it without a mount.
//   CFuse         — libfuse3 as a system library, with a small C shim.
//   FUSELowLevel  — a thin Swift face over libfuse's low-level API: session,
//                   single-use replies answerable later from any thread,
//                   interrupts, poll handles. Knows nothing of multicast.
//   mcastfs       — the executable: command line, and the bridge that routes
//                   FUSE requests to MulticastFS.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "mcastfs",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "DeliveryCore", targets: ["DeliveryCore"]),
        .executable(name: "mcastfs", targets: ["mcastfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .target(name: "Locking", swiftSettings: strict),
        .target(
            name: "DeliveryCore",
            dependencies: [.product(name: "DequeModule", package: "swift-collections"), "Locking"],
            swiftSettings: strict
        ),
        .target(
            name: "MulticastFS",
            dependencies: ["DeliveryCore", "Locking"],
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CFuse",
            pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]
        ),
        .target(
            name: "FUSELowLevel",
            dependencies: ["CFuse", "Locking"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "mcastfs",
            dependencies: [
                "MulticastFS", "FUSELowLevel", "DeliveryCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "core-bench",
            dependencies: [
                "DeliveryCore", "Locking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/core-bench",
            swiftSettings: strict
        ),
        .testTarget(name: "LockingTests", dependencies: ["Locking"], swiftSettings: strict),
        .testTarget(name: "DeliveryCoreTests", dependencies: ["DeliveryCore"], swiftSettings: strict),
        .testTarget(name: "MulticastFSTests", dependencies: ["MulticastFS", "DeliveryCore"], swiftSettings: strict),
        .testTarget(name: "FUSELowLevelTests", dependencies: ["FUSELowLevel", "Locking"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
