//! publisher.rs - publish COUNT messages to a group, in Rust with the
//! standard library only.
//!
//! What it shows: a message is one write(2), so format it into one buffer
//! and hand that to one `write_all`. `writeln!(file, ...)` straight on the
//! file does not do that: it writes the pieces of the format as they come
//! (with Rust 1.95, `writeln!(f, "{} {}", text, i)` is four writes, so four
//! messages: "hello", " ", "7", "\n"), and `io::copy` into the file goes
//! through sendfile(2), which sends a 64 KiB part and then fails with
//! EMSGSIZE. A full member (not drop-when-full)
//! makes the write wait until it has room: nothing is lost. --lines shows
//! the way to use a `BufWriter` and `writeln!` after all: it sets
//! `set message=line`, so that every line is a message however the writes
//! fall, and writes the lines through one 64 KiB buffer (a write(2) for
//! many messages).
//!
//!     build: rustc --edition 2021 -O -o publisher publisher.rs      (no crates)
//!     usage: publisher [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]
//!
//!     MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
//!     "TEXT 1", ... (TEXT defaults to "message"; with --lines each ends in
//!     a newline). --as MEMBER writes on that member's file instead of send,
//!     so the message comes from that member.
//!
//!     $ ./publisher -n 3 chat hello
//!     published 3 messages to chat/send in 0.00 s
//!     $ ./publisher -n 3 --lines chat hello
//!     published 3 lines to chat/send in 0.00 s

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::exit;
use std::time::Instant;

fn usage() -> ! {
    eprintln!("usage: publisher [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]");
    exit(64)
}

fn publish(root: &PathBuf, group: &str, name: &str, text: &str, count: u64, lines: bool) -> io::Result<()> {
    let named = |path: PathBuf| move |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if lines {
        let ctl = root.join(group).join("ctl");
        fs::write(&ctl, "set message=line\n").map_err(named(ctl))?; // one write(2), one command
    }
    let path = root.join(group).join(name);
    // write(true) alone, without create(true): --as with a wrong name must not make a new member.
    let mut file = OpenOptions::new().write(true).open(&path).map_err(named(path))?;
    if lines {
        let mut out = BufWriter::with_capacity(64 << 10, &file);
        for i in 0..count {
            writeln!(out, "{} {}", text, i)?;
        }
        out.flush()?;
    } else {
        for i in 0..count {
            // A record write is never short: it delivers all of it or fails.
            file.write_all(format!("{} {}", text, i).as_bytes())?;
        }
    }
    Ok(())
}

fn main() {
    let mut root = PathBuf::from(std::env::var("MCASTFS").unwrap_or_else(|_| "/mnt/mcastfs".into()));
    let (mut count, mut name, mut lines) = (10u64, String::from("send"), false);
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-m" => root = args.next().unwrap_or_else(|| usage()).into(),
            "-n" => count = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "--as" => name = args.next().unwrap_or_else(|| usage()),
            "--lines" => lines = true,
            a if a.starts_with('-') => usage(),
            _ => rest.push(arg),
        }
    }
    let (group, text) = match rest.as_slice() {
        [g] => (g.as_str(), "message"),
        [g, t] => (g.as_str(), t.as_str()),
        _ => usage(),
    };
    let start = Instant::now();
    if let Err(e) = publish(&root, group, &name, text, count, lines) {
        eprintln!("publisher: {e}");
        exit(1);
    }
    let what = if lines { "lines" } else { "messages" };
    println!("published {count} {what} to {group}/{name} in {:.2} s", start.elapsed().as_secs_f64());
}
