// Subscriber.java - read several members at once, in Java.
//
// What it shows: FileChannel.read on a member is a blocking read(2) that
// returns one whole message (the buffer holds the largest, 1,044,480
// bytes), and -1 once the member has been removed with `rm`. There is no
// Selector for files, so each member gets a thread that blocks in read and
// hands each message to a queue; the main thread waits on the queue with a
// timeout (-t). Use a FileChannel, not a FileInputStream: Thread.interrupt()
// ends a FileChannel read at once (the JDK signals the thread, mcastfs
// answers EINTR having consumed nothing, the read throws
// ClosedByInterruptException), while a FileInputStream read ignores both
// interrupt() and close(). Avoid available() and skip(): both lseek, and
// a member is a stream ("Illegal seek"). A reader thread asks for its next
// message only once the main thread has taken the last, so -n COUNT leaves
// the rest queued.
//
//     usage: java Subscriber.java [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...
//            (or javac Subscriber.java && java Subscriber ...)
//
//     MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing
//     groups and members (and removes the members it made when it ends,
//     Ctrl-C included).
//
//     $ java Subscriber.java --create chat/carol logs/all
//     [subscribed to chat/carol logs/all]
//     chat/carol: alice: hi everyone
//     logs/all: ERROR disk full
//     logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
//     chat/carol: bob: bye
//     ^C

import java.io.IOException;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedByInterruptException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

public class Subscriber {
    static final int READ_SIZE = 1 << 20; // more than the largest message: one read, one message

    /** A message, or data == null: the member left (error == null) or failed. */
    record Event(int member, byte[] data, IOException error) {}

    static final class Reader extends Thread {
        final int index;
        final FileChannel channel;
        final Semaphore next = new Semaphore(1); // one permit per read the main thread wants
        final LinkedBlockingQueue<Event> events;

        Reader(int index, FileChannel channel, LinkedBlockingQueue<Event> events) {
            this.index = index;
            this.channel = channel;
            this.events = events;
            setDaemon(true);
        }

        @Override public void run() {
            ByteBuffer buf = ByteBuffer.allocate(READ_SIZE);
            try {
                while (true) {
                    next.acquire();
                    buf.clear();
                    int n = channel.read(buf);
                    if (n < 0) {
                        events.put(new Event(index, null, null));
                        return;
                    }
                    byte[] data = new byte[n];
                    buf.flip().get(data);
                    events.put(new Event(index, data, null));
                }
            } catch (ClosedByInterruptException | InterruptedException e) {
                // Stopped by the main thread.
            } catch (IOException e) {
                events.add(new Event(index, null, e));
            }
        }
    }

    static void usage() {
        System.err.println("usage: java Subscriber.java [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...");
        System.exit(64);
    }

    public static void main(String[] args) throws Exception {
        String root = System.getenv().getOrDefault("MCASTFS", "/mnt/mcastfs");
        boolean create = false;
        long count = 0;
        double timeout = 0;
        List<String> specs = new ArrayList<>();
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "-m" -> root = args[++i];
                    case "--create" -> create = true;
                    case "-n" -> count = Long.parseLong(args[++i]);
                    case "-t" -> timeout = Double.parseDouble(args[++i]);
                    default -> {
                        if (args[i].startsWith("-")) usage();
                        specs.add(args[i]);
                    }
                }
            }
        } catch (ArrayIndexOutOfBoundsException | NumberFormatException e) {
            usage();
        }
        if (specs.isEmpty()) usage();

        List<Path> made = new ArrayList<>();
        // Ctrl-C and System.exit both run this: leave the groups we joined.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            synchronized (made) {
                for (Path p : made) {
                    try { Files.deleteIfExists(p); } catch (IOException e) { System.err.println(p + ": " + e); }
                }
            }
        }));

        LinkedBlockingQueue<Event> events = new LinkedBlockingQueue<>();
        List<Reader> readers = new ArrayList<>();
        for (String spec : specs) {
            String[] parts = spec.split("/", -1);
            if (parts.length != 2 || parts[0].isEmpty() || parts[1].isEmpty()) {
                System.err.println("Subscriber: \"" + spec + "\" is not GROUP/MEMBER");
                System.exit(1);
            }
            Path path = Path.of(root, parts[0], parts[1]);
            try {
                if (create) {
                    try { Files.createDirectory(path.getParent()); } catch (FileAlreadyExistsException e) { /* there */ }
                    try {
                        Files.createFile(path);
                        synchronized (made) { made.add(path); }
                    } catch (FileAlreadyExistsException e) { /* joined already */ }
                }
                Reader r = new Reader(readers.size(), FileChannel.open(path, StandardOpenOption.READ), events);
                readers.add(r);
            } catch (NoSuchFileException e) {
                System.err.println("Subscriber: " + e.getFile() + ": no such file or directory");
                System.exit(1);
            }
        }
        readers.forEach(Thread::start);
        System.err.println("[subscribed to " + String.join(" ", specs) + "]");

        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        int open = readers.size(), status = 0;
        long received = 0;
        while (open > 0) {
            Event e = timeout > 0 ? events.poll((long) (timeout * 1e9), TimeUnit.NANOSECONDS) : events.take();
            if (e == null) break; // -t: no message for SECONDS
            String spec = specs.get(e.member());
            if (e.data() != null) {
                String text = new String(e.data(), StandardCharsets.UTF_8);
                out.println(spec + ": " + (text.endsWith("\n") ? text.substring(0, text.length() - 1) : text));
                if (count > 0 && ++received >= count) break;
                readers.get(e.member()).next.release();
            } else {
                open--;
                if (e.error() == null) {
                    out.println(spec + ": (left)");
                } else {
                    System.err.println("Subscriber: " + spec + ": " + e.error().getMessage());
                    status = 1;
                }
            }
        }
        // Ends the reads still blocked: each throws ClosedByInterruptException.
        for (Reader r : readers) r.interrupt();
        for (Reader r : readers) r.join();
        System.exit(status);
    }
}
