#!/usr/bin/env node
// publisher.js - publish COUNT messages to a group, in Node.js.
//
// What it shows: `fs.writeSync(fd, buffer)` is one write(2), so one message
// (up to 1,044,480 bytes). It blocks the thread while a member that is not
// drop-when-full has a full queue, and returns once every such member has
// room: nothing is lost. (The async `fs.write` would block a thread of
// libuv's pool instead.) A `fs.createWriteStream` does not keep messages
// apart: writes made while one is in flight go out together in one
// writev(2), one message. --lines shows when a WriteStream is right: it sets
// `set message=line`, so that every line is a message however the stream
// merges or cuts its writes, and writes one line per message into the
// stream.
//
//     usage: node publisher.js [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]
//
//     MOUNT defaults to $MCASTFS or /mnt/mcastfs. Messages are "TEXT 0",
//     "TEXT 1", ... (TEXT defaults to "message"; with --lines each ends in a
//     newline). --as MEMBER writes on that member's file instead of send, so
//     the message comes from that member.
//
//     $ node publisher.js -n 3 chat hello
//     published 3 messages to chat/send in 0.00 s
//     $ node publisher.js -n 3 --lines chat hello
//     published 3 lines to chat/send in 0.00 s
'use strict';
const fs = require('fs');
const path = require('path');

const usage = 'usage: node publisher.js [-m MOUNT] [-n COUNT] [--as MEMBER] [--lines] GROUP [TEXT]';
let root = process.env.MCASTFS || '/mnt/mcastfs', count = 10, name = 'send', lines = false;
const rest = [];
const args = process.argv.slice(2);
while (args.length) {
  const a = args.shift();
  if (a === '-m') root = args.shift();
  else if (a === '-n') count = Number(args.shift());
  else if (a === '--as') name = args.shift();
  else if (a === '--lines') lines = true;
  else if (a.startsWith('-')) { console.error(usage); process.exit(64); }
  else rest.push(a);
}
if (rest.length < 1 || rest.length > 2 || !root || !name || !Number.isInteger(count)) {
  console.error(usage);
  process.exit(64);
}
const [group, text = 'message'] = rest;
const file = path.join(root, group, name);

const start = process.hrtime.bigint();
const done = (what) => {
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`published ${count} ${what} to ${group}/${name} in ${seconds.toFixed(2)} s`);
};
const fail = (e) => {
  console.error(`publisher.js: ${e.message}`);
  process.exit(1);
};

try {
  if (lines) {
    fs.writeFileSync(path.join(root, group, 'ctl'), 'set message=line\n'); // one write(2), one command
    // O_WRONLY alone: 'w' would add O_CREAT, and make a member of a wrong --as name.
    const out = fs.createWriteStream(file, { flags: fs.constants.O_WRONLY });
    out.on('error', fail);
    for (let i = 0; i < count; i++) out.write(`${text} ${i}\n`);
    out.end(() => done('lines'));
  } else {
    const fd = fs.openSync(file, fs.constants.O_WRONLY);
    for (let i = 0; i < count; i++) fs.writeSync(fd, Buffer.from(`${text} ${i}`));
    fs.closeSync(fd);
    done('messages');
  }
} catch (e) {
  fail(e);
}
