#!/usr/bin/env node
// subscriber.js - read several members at once in Node.js, without
// starving libuv's thread pool.
//
// What it shows: Node cannot wait for a file in its event loop (epoll would
// take an mcastfs file, but Node hands every regular file to its thread
// pool, and `new net.Socket({fd})` refuses it with ERR_INVALID_FD_TYPE). A
// blocked `fs.read` holds one of the pool's 4 threads (UV_THREADPOOL_SIZE)
// until a message comes, so four idle members would stall every other fs
// and dns call of the process. Here the parent opens each member and hands
// it, as fd 3, to a child process (this same script, run with --reader)
// that blocks in `fs.readSync`, one whole message per read, and passes each
// message up a pipe with its length in front; the parent reads the pipes in
// its event loop. A child can be
// stopped at any time (-t, -n, Ctrl-C): killing it ends its read, and a read
// ended so consumed nothing. (A worker_thread blocked in readSync cannot be
// stopped: worker.terminate() and process.exit() wait for the read to end.)
// A child reads its next message only after the parent has taken the last,
// so -n COUNT leaves the rest queued.
//
//     usage: node subscriber.js [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...
//
//     MOUNT defaults to $MCASTFS or /mnt/mcastfs. --create makes missing
//     groups and members (and removes the members it made when it ends).
//
//     $ node subscriber.js --create chat/carol logs/all
//     [subscribed to chat/carol logs/all]
//     chat/carol: alice: hi everyone
//     logs/all: ERROR disk full
//     logs/all: (left)                  <- after `rm /mnt/mcastfs/logs/all`
//     chat/carol: bob: bye
//     ^C
'use strict';
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const READ_SIZE = 1 << 20; // more than the largest message: one read, one message

// The child: for every byte the parent writes on stdin, read one message
// from fd 3 and write it on stdout as a u32 length (little-endian) and the
// bytes; exit 0 at end of file (the member left).
function reader() {
  const fd = 3;
  const buf = Buffer.alloc(4 + READ_SIZE);
  const ask = Buffer.alloc(1);
  while (fs.readSync(0, ask) === 1) {
    let n;
    for (;;) {
      try {
        n = fs.readSync(fd, buf, 4, READ_SIZE, null);
        break;
      } catch (e) {
        if (e.code !== 'EINTR') throw e; // a signal's EINTR consumed nothing
      }
    }
    if (n === 0) process.exit(0);
    buf.writeUInt32LE(n, 0);
    fs.writeSync(1, buf, 0, 4 + n);
  }
}

function openMember(root, spec, create) {
  const [group, member, ...rest] = spec.split('/');
  if (!group || !member || rest.length) throw new Error(`${JSON.stringify(spec)} is not GROUP/MEMBER`);
  const file = path.join(root, group, member);
  let made = false;
  if (create) {
    try { fs.mkdirSync(path.join(root, group)); } catch (e) { if (e.code !== 'EEXIST') throw e; }
    try { fs.closeSync(fs.openSync(file, 'wx')); made = true; } catch (e) { if (e.code !== 'EEXIST') throw e; }
  }
  // Opened here, before "[subscribed ...]": from then on every message waits for us.
  return { file, made, fd: fs.openSync(file, 'r') };
}

function main() {
  const usage = 'usage: node subscriber.js [-m MOUNT] [--create] [-n COUNT] [-t SECONDS] GROUP/MEMBER...';
  let root = process.env.MCASTFS || '/mnt/mcastfs', create = false, count = 0, timeout = 0;
  const specs = [];
  const args = process.argv.slice(2);
  while (args.length) {
    const a = args.shift();
    if (a === '-m') root = args.shift();
    else if (a === '--create') create = true;
    else if (a === '-n') count = Number(args.shift());
    else if (a === '-t') timeout = Number(args.shift());
    else if (a.startsWith('-')) { console.error(usage); process.exit(64); }
    else specs.push(a);
  }
  if (!specs.length || !root || Number.isNaN(count) || Number.isNaN(timeout)) { console.error(usage); process.exit(64); }

  const made = [];
  const children = new Set();
  let received = 0, status = 0, idle = null;
  const finish = () => {
    for (const child of children) child.kill('SIGKILL');
    for (const file of made) { // leave the groups we joined
      try { fs.unlinkSync(file); } catch (e) { if (e.code !== 'ENOENT') console.error(e.message); }
    }
    process.exit(status);
  };
  const rearm = () => {
    if (!timeout) return;
    clearTimeout(idle);
    idle = setTimeout(finish, timeout * 1000);
  };

  for (const spec of specs) {
    let member;
    try {
      member = openMember(root, spec, create);
    } catch (e) {
      console.error(`subscriber.js: ${e.message}`);
      status = 1;
      finish();
    }
    if (member.made) made.push(member.file);
    const child = spawn(process.execPath, [__filename, '--reader'], { stdio: ['pipe', 'pipe', 'inherit', member.fd] });
    fs.closeSync(member.fd); // the child has it
    children.add(child);
    let pending = Buffer.alloc(0);
    child.stdout.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32LE(0)) {
        const n = pending.readUInt32LE(0);
        const text = pending.toString('utf8', 4, 4 + n);
        pending = pending.subarray(4 + n);
        process.stdout.write(`${spec}: ${text.endsWith('\n') ? text.slice(0, -1) : text}\n`);
        received += 1;
        if (count && received >= count) return finish();
        rearm();
        child.stdin.write('.'); // the next one
      }
    });
    child.stdin.on('error', () => {}); // a child that died is reported by 'exit'
    child.on('exit', (code) => {
      children.delete(child);
      if (code === 0) process.stdout.write(`${spec}: (left)\n`);
      else if (code !== null) status = 1; // null: killed by a signal (Ctrl-C reaches it too)
      if (!children.size) finish();
    });
    child.stdin.write('.');
  }
  console.error(`[subscribed to ${specs.join(' ')}]`);
  rearm();
  process.on('SIGINT', finish);
  process.on('SIGTERM', finish);
}

if (process.argv[2] === '--reader') reader();
else main();
