/*
 * natsbench.h: what the cluster benchmark's libnats programs (natsbare.c,
 * natsfuse.c) configure alike, so that both stay configured as
 * docs/cluster.md configures a group: its stream and a node's consumer.
 */
#ifndef NATSBENCH_H
#define NATSBENCH_H

#include <nats/nats.h>
#include <stdint.h>

/* A group's stream: interest retention, discard new, max_msgs `backlog`,
 * file storage, one replica, duplicate window 2 min. `subjects` must
 * outlive the call that uses `sc`. */
static inline void group_stream_config(jsStreamConfig *sc, const char *name, const char **subjects, int64_t backlog) {
    jsStreamConfig_Init(sc);
    sc->Name = name;
    sc->Subjects = subjects;
    sc->SubjectsLen = 1;
    sc->Retention = js_InterestPolicy;
    sc->Discard = js_DiscardNew;
    sc->MaxMsgs = backlog;
    sc->Storage = js_FileStorage;
    sc->Replicas = 1;
    sc->Duplicates = (int64_t)120 * 1000000000;
}

/* A node's durable pull consumer from sequence `start`: explicit acks, ack
 * wait 1 h, `max_ack_pending`, inactive threshold 5 s, no filter. */
static inline void node_consumer_config(jsConsumerConfig *cc, const char *durable, uint64_t start, int64_t max_ack_pending) {
    jsConsumerConfig_Init(cc);
    cc->Durable = durable;
    cc->DeliverPolicy = js_DeliverByStartSequence;
    cc->OptStartSeq = start;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = (int64_t)3600 * 1000000000;
    cc->MaxAckPending = max_ack_pending;
    cc->InactiveThreshold = (int64_t)5 * 1000000000;
}

#endif
