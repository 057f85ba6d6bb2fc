// Publisher.java - publish COUNT messages to a group, in Java.
//
// What it shows: OutputStream.write(byte[]) on the file (Files.newOutputStream
// or FileOutputStream) is one write(2), so one message (up to 1,044,480
// bytes); build each message into one byte array first. A full member (not drop-when-full) makes the write wait until it
// has room: nothing is lost. PrintStream.printf on the file does not keep
// messages whole (it writes each piece of the format: printf("%s %d%n")
// is four messages), InputStream.transferTo cuts a stream into 8 KiB
// messages, and FileChannel.transferTo (sendfile) sends a 64 KiB part and
// then fails with "Message too long". --lines shows when a buffered writer
// and printf are right: it sets `set message=line`, so that every line is a
// message however the writes fall, and prints the lines through one 64 KiB
// buffer.
//
//     usage: java Publisher.java [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]
//            (or javac Publisher.java && java Publisher ...)
//
//     MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
//     "TEXT 1", ... (TEXT defaults to "message"; with --lines each ends in a
//     newline). --as MEMBER writes on that member's file instead of send, so
//     the message comes from that member.
//
//     $ java Publisher.java -n 3 chat hello
//     published 3 messages to chat/send in 0.00 s
//     $ java Publisher.java -n 3 --lines chat hello
//     published 3 lines to chat/send in 0.00 s

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

public class Publisher {
    static void usage() {
        System.err.println("usage: java Publisher.java [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]");
        System.exit(64);
    }

    public static void main(String[] args) {
        String root = System.getenv().getOrDefault("MCASTFS", "/mnt/mcastfs");
        String name = "send";
        long count = 10;
        boolean lines = false;
        List<String> rest = new ArrayList<>();
        try {
            for (int i = 0; i < args.length; i++) {
                switch (args[i]) {
                    case "-m" -> root = args[++i];
                    case "-n" -> count = Long.parseLong(args[++i]);
                    case "--as" -> name = args[++i];
                    case "--lines" -> lines = true;
                    default -> {
                        if (args[i].startsWith("-")) usage();
                        rest.add(args[i]);
                    }
                }
            }
        } catch (ArrayIndexOutOfBoundsException | NumberFormatException e) {
            usage();
        }
        if (rest.size() < 1 || rest.size() > 2) usage();
        String group = rest.get(0), text = rest.size() == 2 ? rest.get(1) : "message";
        Path file = Path.of(root, group, name);

        long start = System.nanoTime();
        try {
            if (lines) {
                // One write(2) on ctl is one command.
                Files.writeString(Path.of(root, group, "ctl"), "set message=line\n", StandardOpenOption.WRITE);
                // WRITE alone, not FileOutputStream's O_CREAT: --as with a wrong name must not
                // make a new member.
                try (PrintWriter out = new PrintWriter(new BufferedWriter(new OutputStreamWriter(
                        Files.newOutputStream(file, StandardOpenOption.WRITE), StandardCharsets.UTF_8), 64 << 10))) {
                    for (long i = 0; i < count; i++) out.printf("%s %d\n", text, i);
                    out.flush();
                    if (out.checkError()) throw new IOException("write failed");
                }
            } else {
                try (var out = Files.newOutputStream(file, StandardOpenOption.WRITE)) {
                    for (long i = 0; i < count; i++) out.write((text + " " + i).getBytes(StandardCharsets.UTF_8));
                }
            }
        } catch (IOException e) {
            System.err.println("Publisher: " + e);
            System.exit(1);
        }
        System.out.printf("published %d %s to %s/%s in %.2f s%n", count, lines ? "lines" : "messages", group, name,
                (System.nanoTime() - start) / 1e9);
    }
}
