/*
 * mcastfs.h: client helpers for the framed view of mcastfs (G/frames/).
 *
 * One header, C99, no allocation, no global state: include it and use it.
 * The format is the contract's section "The framed view: batches and message
 * metadata"; clients/README.md summarises it.
 *
 *   Reading:  a frame iterator over the buffer one read(2) filled.
 *   Writing:  a batch builder into a caller's buffer, and mcastfs_send_batch,
 *             which writes a batch and re-sends the rest after a short write.
 *
 *     unsigned char buf[1 << 20];           // holds the largest frame
 *     ssize_t n = read(fd, buf, sizeof buf);
 *     struct mcastfs_frames it;
 *     struct mcastfs_frame f;
 *     int r;
 *     mcastfs_frames_init(&it, buf, n > 0 ? (size_t)n : 0);
 *     while ((r = mcastfs_frame_next(&it, &f)) == MCASTFS_FRAME_OK)
 *         handle(f.sequence, f.uid, f.payload, f.size);
 *     if (r < 0)
 *         fprintf(stderr, "%s at offset %zu\n", mcastfs_frame_error(r), it.offset);
 *
 *     unsigned char out[MCASTFS_MAX_BATCH];
 *     struct mcastfs_batch b;
 *     mcastfs_batch_init(&b, out, sizeof out);
 *     mcastfs_batch_add(&b, "hello", 5);
 *     mcastfs_batch_add(&b, "world", 5);
 *     if (mcastfs_send_batch(wfd, b.data, b.len, NULL, NULL) < 0) perror("send");
 *
 * Multi-byte fields are read and written one byte at a time, so the buffer
 * needs no alignment and the code is right on any byte order.
 *
 * mcastfs_send_batch calls MCASTFS_WRITE(fd, buf, len), which is write(2)
 * unless defined before the include (tests use it to return short counts);
 * write(2) and ssize_t come from <unistd.h>.
 */
#ifndef MCASTFS_H
#define MCASTFS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#ifndef MCASTFS_WRITE
#define MCASTFS_WRITE(fd, buf, len) write((fd), (buf), (len))
#endif

/* The fixed part of a frame's header in this version; a frame's own
 * header_size may be larger (fields added later) and is what counts. */
#define MCASTFS_FRAME_HEADER_SIZE 40u
/* flags bit 0: sent to this member alone, through G/peers/NAME. */
#define MCASTFS_FLAG_PRIVATE 0x01u
/* The upper bound of a group's max_message. */
#define MCASTFS_MAX_MESSAGE 1044480u
/* The largest write(2) that always reaches the daemon as one request: a
 * batch's records (4 + length bytes each) must fit in it. */
#define MCASTFS_MAX_BATCH 1044480u

/* mcastfs_frame_next's results. */
#define MCASTFS_FRAME_OK 1
#define MCASTFS_FRAME_END 0
/* The buffer ends inside a frame (its header, name, payload or padding). */
#define MCASTFS_FRAME_TRUNCATED (-1)
/* header_size below 40 + name_size, or padding bytes that are not zero. */
#define MCASTFS_FRAME_CORRUPT (-2)

/* One frame: the header's fields, and pointers into the read buffer. */
struct mcastfs_frame {
    uint32_t size;          /* payload bytes */
    uint16_t header_size;   /* bytes from the frame's start to its payload */
    uint8_t name_size;      /* bytes of the sender's name; 0: none */
    uint8_t flags;          /* MCASTFS_FLAG_PRIVATE; other bits kept as they came */
    uint64_t sequence;      /* the group's sequence number of the message */
    uint64_t time_ns;       /* CLOCK_REALTIME, ns, when the group accepted it */
    uint32_t pid;           /* writer's thread id from the kernel; 0 if unseen */
    uint32_t uid;           /* writer's uid, from the kernel */
    uint32_t gid;           /* writer's gid, from the kernel */
    uint32_t dropped;       /* messages missed (drop_when_full) just before */
    const unsigned char *name;    /* name_size bytes, not NUL-terminated; NULL if none */
    const unsigned char *payload; /* size bytes */
};

/* An iterator over the frames of one read's buffer. `offset` is where the
 * next frame starts; after an error it is where the bad frame starts, and
 * every later call returns the same error. */
struct mcastfs_frames {
    const unsigned char *buf;
    size_t len;
    size_t offset;
};

/* A batch being built in a caller's buffer: data[0..len) holds `count`
 * records. */
struct mcastfs_batch {
    unsigned char *data;
    size_t cap;
    size_t len;
    size_t count;
};

static inline uint16_t mcastfs_get_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t mcastfs_get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t mcastfs_get_le64(const unsigned char *p)
{
    return (uint64_t)mcastfs_get_le32(p) | (uint64_t)mcastfs_get_le32(p + 4) << 32;
}

static inline void mcastfs_put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void mcastfs_frames_init(struct mcastfs_frames *it, const void *buf, size_t len)
{
    it->buf = (const unsigned char *)buf;
    it->len = len;
    it->offset = 0;
}

/* Decodes the frame at it->offset into *f and moves past it (and its
 * padding). Returns MCASTFS_FRAME_OK, MCASTFS_FRAME_END when the buffer is
 * used up, or a negative MCASTFS_FRAME_* error. The last frame's padding may
 * be absent; the name is the name_size bytes just before the payload. */
static inline int mcastfs_frame_next(struct mcastfs_frames *it, struct mcastfs_frame *f)
{
    const unsigned char *p;
    size_t left, end, following, i;

    if (it->offset >= it->len)
        return MCASTFS_FRAME_END;
    left = it->len - it->offset;
    if (left < MCASTFS_FRAME_HEADER_SIZE)
        return MCASTFS_FRAME_TRUNCATED;
    p = it->buf + it->offset;
    f->size = mcastfs_get_le32(p);
    f->header_size = mcastfs_get_le16(p + 4);
    f->name_size = p[6];
    f->flags = p[7];
    f->sequence = mcastfs_get_le64(p + 8);
    f->time_ns = mcastfs_get_le64(p + 16);
    f->pid = mcastfs_get_le32(p + 24);
    f->uid = mcastfs_get_le32(p + 28);
    f->gid = mcastfs_get_le32(p + 32);
    f->dropped = mcastfs_get_le32(p + 36);
    if (f->header_size < MCASTFS_FRAME_HEADER_SIZE + f->name_size)
        return MCASTFS_FRAME_CORRUPT;
    /* Compared by subtraction: header_size + size may not fit a 32-bit size_t. */
    if (f->header_size > left || f->size > left - f->header_size)
        return MCASTFS_FRAME_TRUNCATED;
    end = (size_t)f->header_size + f->size;
    following = end + ((8 - end % 8) % 8);
    if (following > left) {
        if (end != left)
            return MCASTFS_FRAME_TRUNCATED;
        following = left;
    }
    for (i = end; i < following; i++)
        if (p[i] != 0)
            return MCASTFS_FRAME_CORRUPT;
    f->payload = p + f->header_size;
    f->name = f->name_size ? f->payload - f->name_size : NULL;
    it->offset += following;
    return MCASTFS_FRAME_OK;
}

/* A short description of a mcastfs_frame_next result. */
static inline const char *mcastfs_frame_error(int result)
{
    switch (result) {
    case MCASTFS_FRAME_OK: return "a frame";
    case MCASTFS_FRAME_END: return "end of buffer";
    case MCASTFS_FRAME_TRUNCATED: return "truncated frame: the buffer ends inside it";
    case MCASTFS_FRAME_CORRUPT: return "corrupt frame: header_size below 40 + name_size, or nonzero padding";
    default: return "unknown result";
    }
}

static inline void mcastfs_batch_init(struct mcastfs_batch *b, void *buf, size_t cap)
{
    b->data = (unsigned char *)buf;
    b->cap = cap;
    b->len = 0;
    b->count = 0;
}

/* Empties the batch, to build the next one in the same buffer. */
static inline void mcastfs_batch_clear(struct mcastfs_batch *b)
{
    b->len = 0;
    b->count = 0;
}

/* Appends one message as a record. Returns 0, or leaves the batch unchanged
 * and returns EINVAL (len is 0: the daemon refuses empty records),
 * EMSGSIZE (len above MCASTFS_MAX_MESSAGE) or ENOBUFS (the record does not
 * fit in the rest of the buffer: send this batch and start another). */
static inline int mcastfs_batch_add(struct mcastfs_batch *b, const void *msg, size_t len)
{
    size_t i;
    const unsigned char *m = (const unsigned char *)msg;

    if (len == 0)
        return EINVAL;
    if (len > MCASTFS_MAX_MESSAGE)
        return EMSGSIZE;
    if (b->cap - b->len < 4 || len > b->cap - b->len - 4)
        return ENOBUFS;
    mcastfs_put_le32(b->data + b->len, (uint32_t)len);
    for (i = 0; i < len; i++)
        b->data[b->len + 4 + i] = m[i];
    b->len += 4 + len;
    b->count++;
    return 0;
}

/* 1 when batch[0..len) is a sequence of whole records with nonzero lengths
 * (what the daemon accepts as a batch, max_message aside), else 0. */
static inline int mcastfs_batch_valid(const void *batch, size_t len)
{
    const unsigned char *data = (const unsigned char *)batch;
    size_t at = 0;

    while (at < len) {
        uint32_t record;
        if (len - at < 4)
            return 0;
        record = mcastfs_get_le32(data + at);
        if (record == 0 || record > len - at - 4)
            return 0;
        at += 4 + (size_t)record;
    }
    return 1;
}

/* Writes the batch batch[0..len) on fd; after a short write (the daemon
 * delivered a prefix of the records and returned their bytes) it writes the
 * rest, until all is delivered. Returns 0 when all is delivered, else -1
 * with errno:
 *   EINVAL  the batch does not parse (checked before anything is written);
 *   EAGAIN  fd is non-blocking and the next message does not fit now;
 *   EINTR   a signal came before anything was delivered; once something is
 *           delivered EINTR is retried, so -1 with EINTR always means that
 *           nothing was sent;
 *   EIO     write returned 0, or a count that does not end on a record
 *           boundary (the framed view never does either);
 *   any other error of write(2) (EMSGSIZE, EPERM, ...).
 * Either way *sent_bytes and *sent_messages (each may be NULL) get what was
 * delivered, in whole records: the rest to send starts at
 * batch + *sent_bytes. Keep len within MCASTFS_MAX_BATCH so that each
 * write reaches the daemon whole. */
static inline int mcastfs_send_batch(int fd, const void *batch, size_t len, size_t *sent_bytes,
                                     size_t *sent_messages)
{
    const unsigned char *data = (const unsigned char *)batch;
    size_t done = 0, messages = 0;
    int error = 0;

    if (!mcastfs_batch_valid(batch, len))
        error = EINVAL;
    while (error == 0 && done < len) {
        ssize_t n = MCASTFS_WRITE(fd, data + done, len - done);
        size_t reached;
        if (n < 0) {
            if (errno == EINTR && done > 0)
                continue;
            error = errno;
            break;
        }
        if (n == 0 || (size_t)n > len - done) {
            error = EIO;
            break;
        }
        /* Count the records delivered; the count must end on a boundary. */
        reached = done + (size_t)n;
        while (done < reached) {
            size_t next = done + 4 + (size_t)mcastfs_get_le32(data + done);
            if (next > reached) {
                error = EIO;
                break;
            }
            done = next;
            messages++;
        }
    }
    if (sent_bytes)
        *sent_bytes = done;
    if (sent_messages)
        *sent_messages = messages;
    if (error != 0) {
        errno = error;
        return -1;
    }
    return 0;
}

#endif /* MCASTFS_H */
