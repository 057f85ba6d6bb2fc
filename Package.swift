// swift-tools-version:6.0
//
// The layering, from the bottom up:
//   Locking       — the one lock every module uses (a glibc adaptive mutex;
//                   Sources/Locking says why not Synchronization.Mutex).
//   DeliveryCore  — every rule of delivery; pure Swift, no FUSE, no paths, no errno.
//   FileSystemTypes — the vocabulary the filesystem and its FUSE face share
//                   (attributes, attribute changes, directory entries, open
//                   flags, callers), on swift-system's Errno, FileMode,
//                   FilePermissions, UserID and GroupID. No libfuse.
//   MulticastFS   — the filesystem contract mapped onto the core (inodes, names,
//                   modes, ctl grammar, status format, errno); no libfuse either,
//                   so tests drive it without a mount.
//   CFuse         — libfuse3 as a system library, with a small C shim.
//   FUSELowLevel  — a thin Swift face over libfuse's low-level API: session,
//                   single-use replies answerable later from any thread,
//                   interrupts, poll handles. Knows nothing of multicast.
//   CFuseKernel, FUSETesting — tests only, in no product: a fake kernel that
//                   feeds raw requests (<linux/fuse.h>'s structs) to a real
//                   libfuse session and decodes what the real replies send.
//   MulticastFUSE — the contract's filesystem served over FUSE: the bridge
//                   that routes each request to MulticastFS and answers it.
//   DaemonLog     — the daemon's swift-log handler (stderr, the journal's
//                   <N> priorities). The layers log through swift-log's API
//                   only (FUSELowLevel: libfuse's lines, its own failed
//                   calls); DeliveryCore and MulticastFS do not log.
//   mcastfs       — the executable: the command line, mounting, signals.
//   CNATS, NATSClient — libnats (nats.c 3.4) as a system library, and a small
//                   typed Swift face over the part of it groups across hosts
//                   use (connections, JetStream streams, pull consumers, KV).
//                   Knows nothing of multicast; no other module imports CNATS.
//   Cluster       — groups across hosts (docs/cluster.md): nodes, the
//                   buckets of groups, members and nodes, a stream per group,
//                   publishing and waiting for room, a consumer per node and
//                   group and its delivery loop. On NATSClient; hands
//                   messages to DeliveryCore's side through a sink.
//   NATSTestSupport — tests only: nats-servers on loopback, started per test.
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let system: Target.Dependency = .product(name: "SystemPackage", package: "swift-system")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")

let package = Package(
    name: "mcastfs",
    products: [
        .library(name: "DeliveryCore", targets: ["DeliveryCore"]),
        .executable(name: "mcastfs", targets: ["mcastfs"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .target(name: "Locking", swiftSettings: strict),
        .target(
            name: "DeliveryCore",
            dependencies: [.product(name: "DequeModule", package: "swift-collections"), "Locking"],
            swiftSettings: strict
        ),
        .target(
            name: "FileSystemTypes",
            dependencies: [system],
            swiftSettings: strict
        ),
        .target(
            name: "MulticastFS",
            dependencies: ["DeliveryCore", "FileSystemTypes", "Locking", system],
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CFuse",
            pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]
        ),
        .target(
            name: "FUSELowLevel",
            dependencies: ["CFuse", "FileSystemTypes", "Locking", system, logging],
            swiftSettings: strict
        ),
        .systemLibrary(name: "CFuseKernel"),
        .target(
            name: "FUSETesting",
            dependencies: ["FUSELowLevel", "CFuseKernel", "FileSystemTypes", "Locking", system, logging],
            swiftSettings: strict
        ),
        .target(
            name: "MulticastFUSE",
            dependencies: ["MulticastFS", "DeliveryCore", "FUSELowLevel", "FileSystemTypes", system],
            swiftSettings: strict
        ),
        .target(name: "DaemonLog", dependencies: [logging], swiftSettings: strict),
        .executableTarget(
            name: "mcastfs",
            dependencies: [
                "MulticastFUSE", "MulticastFS", "FUSELowLevel", "FileSystemTypes", "DeliveryCore", "Cluster", "ClusterFS", system,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                "DaemonLog",
            ],
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CNATS",
            pkgConfig: "libnats",
            providers: [.apt(["libnats-dev"])]
        ),
        .target(name: "NATSClient", dependencies: ["CNATS", "Locking"], swiftSettings: strict),
        .target(name: "Cluster", dependencies: ["NATSClient", "DeliveryCore", "Locking"], swiftSettings: strict),
        // The glue: a clustered mount's SharedCatalog (MulticastFS) on a ClusterNode (Cluster).
        .target(
            name: "ClusterFS",
            dependencies: ["Cluster", "MulticastFS", "DeliveryCore", "FileSystemTypes", system],
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
        // The fuzzers (docs/fuzzing.md, scripts/fuzz): one executable. Built with
        // -sanitize=fuzzer and -DFUZZING it is libFuzzer's; otherwise it replays
        // inputs given as files, so that every build compiles it.
        .executableTarget(
            name: "mcastfs-fuzz",
            dependencies: ["MulticastFS", "DeliveryCore", system],
            path: "fuzz/harness",
            swiftSettings: strict
        ),
        .testTarget(name: "LockingTests", dependencies: ["Locking"], swiftSettings: strict),
        // Test-only helpers the test targets share (a seeded generator).
        .target(name: "TestSupport", path: "Tests/Support", swiftSettings: strict),
        .testTarget(name: "DeliveryCoreTests", dependencies: ["DeliveryCore", "Locking", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "MulticastFSTests", dependencies: ["MulticastFS", "FileSystemTypes", "DeliveryCore", "Locking", "TestSupport", system], swiftSettings: strict),
        .testTarget(
            name: "MulticastFUSETests",
            dependencies: ["MulticastFUSE", "MulticastFS", "FUSETesting", "FUSELowLevel", "FileSystemTypes", "DeliveryCore", system],
            swiftSettings: strict
        ),
        .target(name: "NATSTestSupport", dependencies: ["NATSClient", "Locking"], path: "Tests/NATSSupport", swiftSettings: strict),
        .testTarget(name: "NATSClientTests", dependencies: ["NATSClient", "NATSTestSupport"], swiftSettings: strict),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "NATSClient", "DeliveryCore", "Locking", "NATSTestSupport", "TestSupport"], swiftSettings: strict),
        .testTarget(name: "FUSELowLevelTests", dependencies: ["FUSELowLevel", "FUSETesting", "FileSystemTypes", "Locking", system, logging], swiftSettings: strict),
        .testTarget(name: "DaemonLogTests", dependencies: ["DaemonLog", logging], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
