//! subscriber.rs - read several members at once, in Rust with the standard
//! library only.
//!
//! What it shows: `File::read` on a member is a blocking read(2) that returns
//! one whole message (the buffer holds the largest, 1,044,480 bytes), and
//! `Ok(0)` once the member has been removed with `rm`. std has no poll for
//! files, so each member gets a thread that blocks in `read` and hands each
//! message over a channel; the main thread waits on the channel with
//! `recv_timeout` (for -t). A reader thread asks for its next message only
//! once the main thread has taken the last, so -n COUNT leaves the rest
//! queued. A thread blocked in `read` cannot be woken from std; when the
//! program ends, exiting the process ends those reads, having consumed
//! nothing. std does not catch signals either: Ctrl-C kills the program and
//! leaves any member it made (-n and -t end it cleanly).
//!
//!     build: rustc --edition 2021 -O -o subscriber subscriber.rs      (no crates)
//!     usage: subscriber [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...
//!
//!     MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing
//!     groups and members (and removes the members it made when it ends).
//!
//!     $ ./subscriber --create -t 60 chat/carol logs/all
//!     [subscribed to chat/carol logs/all]
//!     chat/carol: alice: hi everyone
//!     logs/all: ERROR disk full
//!     logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
//!     chat/carol: bob: bye

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

const READ_SIZE: usize = 1 << 20; // more than the largest message: one read, one message

enum Event {
    Message(usize, Vec<u8>),
    Left(usize),
    Failed(usize, io::Error),
}

/// Blocks in read(2) each time the main thread asks for the next message.
fn read_member(index: usize, mut file: File, next: Receiver<()>, events: Sender<Event>) {
    let mut buf = vec![0u8; READ_SIZE];
    while next.recv().is_ok() {
        let event = loop {
            match file.read(&mut buf) {
                Ok(0) => break Event::Left(index),
                Ok(n) => break Event::Message(index, buf[..n].to_vec()),
                // A signal's EINTR consumed nothing: read again.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => break Event::Failed(index, e),
            }
        };
        let last = !matches!(event, Event::Message(..));
        if events.send(event).is_err() || last {
            return;
        }
    }
}

fn open_member(root: &Path, spec: &str, create: bool) -> io::Result<(File, bool)> {
    let (group, member) = match spec.split_once('/') {
        Some((g, m)) if !g.is_empty() && !m.is_empty() && !m.contains('/') => (g, m),
        _ => return Err(io::Error::new(ErrorKind::InvalidInput, format!("{spec:?} is not GROUP/MEMBER"))),
    };
    let path = root.join(group).join(member);
    let mut made = false;
    if create {
        match fs::create_dir(root.join(group)) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        match OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(_) => made = true,
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
    }
    Ok((File::open(&path)?, made))
}

fn usage() -> ! {
    eprintln!("usage: subscriber [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...");
    exit(64)
}

fn main() {
    let mut root = PathBuf::from(std::env::var("MCASTFS").unwrap_or_else(|_| "/mnt/mcastfs".into()));
    let (mut create, mut count, mut timeout) = (false, 0u64, None);
    let mut specs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-m" => root = args.next().unwrap_or_else(|| usage()).into(),
            "--create" => create = true,
            "-n" => count = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage()),
            "-t" => {
                let secs: f64 = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage());
                timeout = Some(Duration::from_secs_f64(secs));
            }
            a if a.starts_with('-') => usage(),
            _ => specs.push(arg),
        }
    }
    if specs.is_empty() {
        usage();
    }

    let (events, inbox) = mpsc::channel();
    let mut asks = Vec::new();
    let mut made = Vec::new();
    let mut status = 0;
    for (index, spec) in specs.iter().enumerate() {
        match open_member(&root, spec, create) {
            Ok((file, created)) => {
                if created {
                    made.push(root.join(spec));
                }
                let (ask, next) = mpsc::channel();
                let events = events.clone();
                thread::spawn(move || read_member(index, file, next, events));
                ask.send(()).unwrap();
                asks.push(Some(ask));
            }
            Err(e) => {
                eprintln!("subscriber: {spec}: {e}");
                status = 1;
                break;
            }
        }
    }

    if status == 0 {
        eprintln!("[subscribed to {}]", specs.join(" "));
        let mut out = io::stdout().lock();
        let mut received = 0;
        let mut open = asks.len();
        while open > 0 {
            let event = match timeout {
                Some(t) => match inbox.recv_timeout(t) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => unreachable!("main holds a sender"),
                },
                None => inbox.recv().unwrap(),
            };
            match event {
                Event::Message(i, data) => {
                    let text = String::from_utf8_lossy(&data);
                    // One write per line, flushed: the line is out before the next read.
                    out.write_all(format!("{}: {}\n", specs[i], text.strip_suffix('\n').unwrap_or(&text)).as_bytes())
                        .and_then(|_| out.flush())
                        .expect("stdout");
                    received += 1;
                    if count > 0 && received >= count {
                        break;
                    }
                    asks[i].as_ref().unwrap().send(()).unwrap();
                }
                Event::Left(i) => {
                    writeln!(out, "{}: (left)", specs[i]).and_then(|_| out.flush()).expect("stdout");
                    asks[i] = None;
                    open -= 1;
                }
                Event::Failed(i, e) => {
                    eprintln!("subscriber: {}: {e}", specs[i]);
                    asks[i] = None;
                    open -= 1;
                    status = 1;
                }
            }
        }
    }
    for path in &made {
        // Leave the groups we joined.
        if let Err(e) = fs::remove_file(path) {
            if e.kind() != ErrorKind::NotFound {
                eprintln!("subscriber: {}: {e}", path.display());
            }
        }
    }
    // Ends the reader threads still blocked in read(2).
    exit(status)
}
