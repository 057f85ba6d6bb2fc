/*
 * CNATS: the official NATS C client (nats.c 3.4, Debian libnats-dev) for
 * Swift. Only NATSClient imports it; everything else talks to NATS through
 * that module's typed wrapper.
 */
#ifndef MCASTFS_CNATS_SHIM_H
#define MCASTFS_CNATS_SHIM_H

#include <nats/nats.h>

#endif
