public import FileSystemTypes

/// A lookup answer: which inode a name leads to, and how long the kernel may
/// cache the name (`entryTimeout`) and the attributes (`attributeTimeout`),
/// in seconds.
public struct EntryParameters: Sendable, Equatable {
    public var ino: UInt64
    public var generation: UInt64
    public var attributes: FileAttributes
    public var attributeTimeout: Double
    public var entryTimeout: Double

    public init(
        ino: UInt64, generation: UInt64 = 0, attributes: FileAttributes,
        attributeTimeout: Double, entryTimeout: Double
    ) {
        self.ino = ino
        self.generation = generation
        self.attributes = attributes
        self.attributeTimeout = attributeTimeout
        self.entryTimeout = entryTimeout
    }
}

/// How an opened file behaves in the kernel (the reply's FOPEN_* flags).
public struct OpenParameters: Sendable, Equatable {
    /// The file handle the kernel hands back on every request on this open file.
    public var fh: UInt64
    /// FOPEN_DIRECT_IO: bypass the page cache; every read(2)/write(2) reaches us.
    public var directIO: Bool
    /// FOPEN_NONSEEKABLE: lseek(2) fails with ESPIPE; pread/pwrite are refused.
    public var nonseekable: Bool
    /// FOPEN_STREAM: no file position at all. The kernel then neither holds
    /// the file's position lock during read(2)/write(2) (so reads and writes
    /// on one shared fd run concurrently) nor advances an offset: every
    /// read(2)/write(2) starts at offset 0.
    public var stream: Bool
    /// FOPEN_KEEP_CACHE: keep cached pages from earlier opens.
    public var keepCache: Bool
    /// FOPEN_CACHE_DIR (opendir only): the kernel may cache readdir results.
    public var cacheDirectory: Bool
    /// FOPEN_NOFLUSH: no FLUSH request on close(2).
    public var noFlush: Bool

    public init(
        fh: UInt64, directIO: Bool = false, nonseekable: Bool = false, stream: Bool = false,
        keepCache: Bool = false, cacheDirectory: Bool = false, noFlush: Bool = false
    ) {
        self.fh = fh
        self.directIO = directIO
        self.nonseekable = nonseekable
        self.stream = stream
        self.keepCache = keepCache
        self.cacheDirectory = cacheDirectory
        self.noFlush = noFlush
    }

    /// A pipe-like file: direct I/O, not seekable, a stream.
    public static func stream(fh: UInt64) -> OpenParameters {
        OpenParameters(fh: fh, directIO: true, nonseekable: true, stream: true)
    }
}

/// The answer to statfs(2).
public struct FilesystemStatistics: Sendable, Equatable {
    public var blockSize: UInt64
    public var fragmentSize: UInt64
    public var blocks: UInt64
    public var blocksFree: UInt64
    public var blocksAvailable: UInt64
    public var files: UInt64
    public var filesFree: UInt64
    public var nameMax: UInt64

    public init(
        blockSize: UInt64 = 4096, fragmentSize: UInt64 = 4096, blocks: UInt64 = 0,
        blocksFree: UInt64 = 0, blocksAvailable: UInt64 = 0, files: UInt64 = 0,
        filesFree: UInt64 = 0, nameMax: UInt64 = 255
    ) {
        self.blockSize = blockSize
        self.fragmentSize = fragmentSize
        self.blocks = blocks
        self.blocksFree = blocksFree
        self.blocksAvailable = blocksAvailable
        self.files = files
        self.filesFree = filesFree
        self.nameMax = nameMax
    }
}
